//! The subset of `onnx/onnx.proto` (proto2) that smelt writes, as `prost` derive structs.
//!
//! Field numbers, wire types and packing are copied from `onnx/onnx.proto` (checked against
//! onnx 1.23.2's copy and the one on GitHub); every tag below is that file's number. Layout rules
//! that follow from proto2 and matter on the wire:
//!
//! - Singular fields are `optional`, so they are `Option<T>` here and a present field is written
//!   even when it holds the default (as protobuf's own proto2 code does). prost's derive adds a
//!   getter per optional field that returns the default when the field is absent.
//! - Repeated scalars are *unpacked* unless the `.proto` says `[packed = true]` (only
//!   `TensorProto.float_data`, `int32_data`, `int64_data` among the fields here); hence the
//!   `packed = "false"` on `dims`, `floats` and `ints`.
//! - Fields are declared in field-number order, so prost writes them in the order protobuf's own
//!   serializer does and a file re-serialized by the `onnx` Python package is byte-identical.
//!
//! Nested messages and enums live in snake_case modules named after their parent, as
//! `prost-build` would generate them (`tensor_proto::DataType`, `type_proto::Tensor`, ...).

/// A whole model: IR version, operator sets, producer and the top-level graph.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ModelProto {
    /// ONNX IR version the file follows (8 = 2021-07-30, opsets up to 15 by the IR table).
    #[prost(int64, optional, tag = "1")]
    pub ir_version: Option<i64>,
    /// Tool that wrote the model ("smelt").
    #[prost(string, optional, tag = "2")]
    pub producer_name: Option<String>,
    /// Version of that tool.
    #[prost(string, optional, tag = "3")]
    pub producer_version: Option<String>,
    /// Reverse-DNS namespace of the model (unused by smelt).
    #[prost(string, optional, tag = "4")]
    pub domain: Option<String>,
    /// Version of the model itself (unused by smelt).
    #[prost(int64, optional, tag = "5")]
    pub model_version: Option<i64>,
    /// Free-form documentation (Markdown allowed).
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    /// The computation.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Operator sets the graph uses; one entry per domain ("" = the default ONNX domain).
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
}

/// An operator set: a domain and its version (the "opset").
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct OperatorSetIdProto {
    /// Domain; "" (or absent) is the default `ai.onnx` domain.
    #[prost(string, optional, tag = "1")]
    pub domain: Option<String>,
    /// Opset version, e.g. 13.
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

/// A graph: nodes in topological order, constant tensors, and typed inputs and outputs.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct GraphProto {
    /// Nodes, topologically sorted.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Graph name.
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    /// Constant tensors (weights); since IR 4 they need not also be graph inputs.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Free-form documentation.
    #[prost(string, optional, tag = "10")]
    pub doc_string: Option<String>,
    /// Graph inputs with their types.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Graph outputs with their types.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// Optional types of intermediate values.
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

/// One operator call: named inputs and outputs (edges are names) plus attributes.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct NodeProto {
    /// Input value names; "" marks an omitted optional input.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output value names.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Node name (for diagnostics).
    #[prost(string, optional, tag = "3")]
    pub name: Option<String>,
    /// Operator, e.g. "Conv".
    #[prost(string, optional, tag = "4")]
    pub op_type: Option<String>,
    /// Attributes of the operator.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Free-form documentation.
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    /// Operator set domain; "" is the default ONNX domain.
    #[prost(string, optional, tag = "7")]
    pub domain: Option<String>,
}

/// A named attribute value; `type` says which one of the value fields is in use.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct AttributeProto {
    /// Attribute name, e.g. "kernel_shape".
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// FLOAT value.
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    /// INT value.
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    /// STRING value (UTF-8 bytes).
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    /// TENSOR value.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// FLOATS value (unpacked on the wire: proto2 without `[packed = true]`).
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    /// INTS value (unpacked on the wire).
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    /// STRINGS value.
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    /// Free-form documentation.
    #[prost(string, optional, tag = "13")]
    pub doc_string: Option<String>,
    /// Which value field is set (required by checkers since IR 2).
    #[prost(enumeration = "attribute_proto::AttributeType", optional, tag = "20")]
    pub r#type: Option<i32>,
}

/// Nested types of [`AttributeProto`].
pub mod attribute_proto {
    /// The discriminator of an attribute's value; the numbers are onnx.proto's.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
    #[repr(i32)]
    pub enum AttributeType {
        /// Not set.
        Undefined = 0,
        /// `f`.
        Float = 1,
        /// `i`.
        Int = 2,
        /// `s`.
        String = 3,
        /// `t`.
        Tensor = 4,
        /// `g` (a subgraph; not modelled here).
        Graph = 5,
        /// `floats`.
        Floats = 6,
        /// `ints`.
        Ints = 7,
        /// `strings`.
        Strings = 8,
        /// `tensors` (not modelled here).
        Tensors = 9,
        /// `graphs` (not modelled here).
        Graphs = 10,
        /// `sparse_tensor` (not modelled here).
        SparseTensor = 11,
        /// `sparse_tensors` (not modelled here).
        SparseTensors = 12,
        /// `tp` (not modelled here).
        TypeProto = 13,
        /// `type_protos` (not modelled here).
        TypeProtos = 14,
    }
}

/// A tensor value: shape, element type, and the data in a typed field or in `raw_data`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TensorProto {
    /// Shape, outermost first; `[]` is a scalar. Unpacked on the wire.
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// Element type, a [`tensor_proto::DataType`] value (declared `int32` in onnx.proto).
    #[prost(int32, optional, tag = "2")]
    pub data_type: Option<i32>,
    /// FLOAT (and COMPLEX64) data.
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// INT32, and also INT8/UINT8/INT16/UINT16/BOOL/FLOAT16 data, one value per element.
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    /// INT64 data.
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// Name; initializers are referenced by it.
    #[prost(string, optional, tag = "8")]
    pub name: Option<String>,
    /// Data as fixed-width little-endian bytes, row-major; excludes the typed fields.
    #[prost(bytes = "vec", optional, tag = "9")]
    pub raw_data: Option<Vec<u8>>,
    /// Free-form documentation.
    #[prost(string, optional, tag = "12")]
    pub doc_string: Option<String>,
}

/// Nested types of [`TensorProto`].
pub mod tensor_proto {
    /// Element types; the numbers are onnx.proto's (the commonly used ones only).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
    #[repr(i32)]
    pub enum DataType {
        /// Not set.
        Undefined = 0,
        /// f32.
        Float = 1,
        /// u8.
        Uint8 = 2,
        /// i8.
        Int8 = 3,
        /// u16.
        Uint16 = 4,
        /// i16.
        Int16 = 5,
        /// i32.
        Int32 = 6,
        /// i64.
        Int64 = 7,
        /// UTF-8 string.
        String = 8,
        /// bool.
        Bool = 9,
        /// IEEE half.
        Float16 = 10,
        /// f64.
        Double = 11,
        /// u32.
        Uint32 = 12,
        /// u64.
        Uint64 = 13,
        /// bfloat16.
        Bfloat16 = 16,
        /// FP8 E4M3FN.
        Float8e4m3fn = 17,
        /// FP8 E5M2.
        Float8e5m2 = 19,
        /// Unsigned 4-bit integer, two per byte.
        Uint4 = 21,
        /// Signed 4-bit integer, two per byte.
        Int4 = 22,
    }
}

/// A named, typed value: a graph input, output or intermediate.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ValueInfoProto {
    /// Value name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Its type.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    /// Free-form documentation.
    #[prost(string, optional, tag = "3")]
    pub doc_string: Option<String>,
}

/// A value's type; only the tensor variant of onnx.proto's oneof is modelled.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TypeProto {
    /// The kind of value.
    #[prost(oneof = "type_proto::Value", tags = "1")]
    pub value: Option<type_proto::Value>,
    /// Optional standard type denotation (e.g. "IMAGE").
    #[prost(string, optional, tag = "6")]
    pub denotation: Option<String>,
}

/// Nested types of [`TypeProto`].
pub mod type_proto {
    /// A tensor type: element type and (optionally) shape.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Tensor {
        /// A [`super::tensor_proto::DataType`] value; must not be UNDEFINED.
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        /// Shape; absent means unknown rank, `dim: []` means a scalar.
        #[prost(message, optional, tag = "2")]
        pub shape: Option<super::TensorShapeProto>,
    }

    /// The `value` oneof of [`super::TypeProto`] (sequence, map, optional, sparse and opaque
    /// types are left out).
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Value {
        /// A tensor.
        #[prost(message, tag = "1")]
        TensorType(Tensor),
    }
}

/// A tensor shape: one entry per axis, each a number or a symbolic name.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TensorShapeProto {
    /// Axes, outermost first.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

/// Nested types of [`TensorShapeProto`].
pub mod tensor_shape_proto {
    /// One axis; `value` absent means an unknown, unnamed size.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Dimension {
        /// The size or its symbolic name.
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
        /// Optional standard denotation (e.g. "DATA_BATCH").
        #[prost(string, optional, tag = "3")]
        pub denotation: Option<String>,
    }

    /// Nested types of [`Dimension`].
    pub mod dimension {
        /// The `value` oneof of [`super::Dimension`].
        #[derive(Clone, PartialEq, ::prost::Oneof)]
        pub enum Value {
            /// A fixed size.
            #[prost(int64, tag = "1")]
            DimValue(i64),
            /// A symbolic size, e.g. "N" for a dynamic batch axis.
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Bytes computed by hand from onnx.proto's field numbers: key = (field << 3) | wire type,
    /// wire type 0 = varint, 2 = length-delimited, 5 = 32-bit.
    #[test]
    fn tensor_proto_bytes_match_the_spec_field_numbers() {
        let t = TensorProto {
            dims: vec![2, 1],
            data_type: Some(tensor_proto::DataType::Float as i32),
            float_data: vec![1.0, -2.0],
            int64_data: vec![300],
            name: Some("w".into()),
            raw_data: Some(vec![0xAB]),
            ..Default::default()
        };
        #[rustfmt::skip]
        let want: &[u8] = &[
            0x08, 0x02, 0x08, 0x01,            // dims (1, varint), unpacked: 2, 1
            0x10, 0x01,                        // data_type (2, varint) = FLOAT
            0x22, 0x08,                        // float_data (4, packed), 8 bytes
            0x00, 0x00, 0x80, 0x3F,            //   1.0f32 LE
            0x00, 0x00, 0x00, 0xC0,            //   -2.0f32 LE
            0x3A, 0x02, 0xAC, 0x02,            // int64_data (7, packed): 300 = varint AC 02
            0x42, 0x01, b'w',                  // name (8) = "w"
            0x4A, 0x01, 0xAB,                  // raw_data (9)
        ];
        assert_eq!(t.encode_to_vec(), want);
        assert_eq!(TensorProto::decode(want).unwrap(), t);
    }

    #[test]
    fn attribute_and_shape_bytes_match_the_spec_field_numbers() {
        let a = AttributeProto {
            name: Some("k".into()),
            ints: vec![3, 3],
            r#type: Some(attribute_proto::AttributeType::Ints as i32),
            ..Default::default()
        };
        #[rustfmt::skip]
        let want: &[u8] = &[
            0x0A, 0x01, b'k',                  // name (1)
            0x40, 0x03, 0x40, 0x03,            // ints (8, varint), unpacked
            0xA0, 0x01, 0x07,                  // type (20): key 160 = varint A0 01; INTS = 7
        ];
        assert_eq!(a.encode_to_vec(), want);

        let s = TensorShapeProto {
            dim: vec![
                tensor_shape_proto::Dimension {
                    value: Some(tensor_shape_proto::dimension::Value::DimParam("N".into())),
                    denotation: None,
                },
                tensor_shape_proto::Dimension {
                    value: Some(tensor_shape_proto::dimension::Value::DimValue(0)),
                    denotation: None,
                },
            ],
        };
        #[rustfmt::skip]
        let want: &[u8] = &[
            0x0A, 0x03, 0x12, 0x01, b'N',      // dim (1) { dim_param (2) = "N" }
            0x0A, 0x02, 0x08, 0x00,            // dim (1) { dim_value (1) = 0, oneof: written }
        ];
        assert_eq!(s.encode_to_vec(), want);
    }

    #[test]
    fn present_defaults_are_written_absent_fields_are_not() {
        let set = OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        };
        assert_eq!(set.encode_to_vec(), [0x0A, 0x00, 0x10, 0x0D]);
        let unset = OperatorSetIdProto {
            domain: None,
            version: Some(13),
        };
        assert_eq!(unset.encode_to_vec(), [0x10, 0x0D]);
        assert_eq!(unset.domain(), "");
    }
}
