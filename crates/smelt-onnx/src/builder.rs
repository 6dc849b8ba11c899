//! A plain builder for [`GraphProto`]s: typed inputs and outputs, initializers stored as
//! little-endian `raw_data`, and nodes with attributes. It checks only what it cannot leave to
//! `onnx.checker` without producing a garbled file: that every initializer's data fills its shape.

use crate::ir_version_for;
use crate::proto::attribute_proto::AttributeType;
use crate::proto::tensor_proto::DataType;
use crate::proto::tensor_shape_proto::{Dimension, dimension};
use crate::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, type_proto,
};

/// One axis of a graph input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A size known when the model is written.
    Fixed(i64),
    /// A size named in the file and bound at run time, e.g. `"N"` for a dynamic batch axis.
    Symbolic(String),
}

impl From<i64> for Dim {
    fn from(n: i64) -> Self {
        Dim::Fixed(n)
    }
}

impl From<&str> for Dim {
    fn from(name: &str) -> Self {
        Dim::Symbolic(name.to_owned())
    }
}

/// Builds one graph, then wraps it into a [`ModelProto`] with [`GraphBuilder::finish`].
#[derive(Clone, Debug, Default)]
pub struct GraphBuilder {
    graph: GraphProto,
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            graph: GraphProto {
                name: Some(name.to_owned()),
                ..Default::default()
            },
        }
    }

    /// Sets the graph's documentation string.
    pub fn doc_string(&mut self, doc: &str) -> &mut Self {
        self.graph.doc_string = Some(doc.to_owned());
        self
    }

    /// Declares a graph input of element type `elem` and shape `dims`.
    pub fn input(&mut self, name: &str, elem: DataType, dims: &[Dim]) -> &mut Self {
        self.graph.input.push(value_info(name, elem, dims));
        self
    }

    /// Declares an f32 graph input.
    pub fn input_f32(&mut self, name: &str, dims: &[Dim]) -> &mut Self {
        self.input(name, DataType::Float, dims)
    }

    /// Declares a graph output of element type `elem` and shape `dims`.
    pub fn output(&mut self, name: &str, elem: DataType, dims: &[Dim]) -> &mut Self {
        self.graph.output.push(value_info(name, elem, dims));
        self
    }

    /// Declares an f32 graph output.
    pub fn output_f32(&mut self, name: &str, dims: &[Dim]) -> &mut Self {
        self.output(name, DataType::Float, dims)
    }

    /// Records the type of an intermediate value (optional in ONNX; helps readers and checkers).
    pub fn value_info(&mut self, name: &str, elem: DataType, dims: &[Dim]) -> &mut Self {
        self.graph.value_info.push(value_info(name, elem, dims));
        self
    }

    /// Adds a ready-made initializer tensor.
    pub fn initializer(&mut self, tensor: TensorProto) -> &mut Self {
        self.graph.initializer.push(tensor);
        self
    }

    /// Adds an f32 initializer of shape `dims` (row-major `data`).
    ///
    /// # Panics
    /// If a dim is negative or `data.len()` is not the product of `dims`.
    pub fn initializer_f32(&mut self, name: &str, dims: &[i64], data: &[f32]) -> &mut Self {
        let raw = le_bytes(data, |x| x.to_le_bytes());
        self.initializer(raw_tensor(name, DataType::Float, dims, data.len(), raw))
    }

    /// Adds an i8 initializer (e.g. INT8 weights for `DequantizeLinear`). Panics as
    /// [`Self::initializer_f32`].
    pub fn initializer_i8(&mut self, name: &str, dims: &[i64], data: &[i8]) -> &mut Self {
        let raw = le_bytes(data, |x| x.to_le_bytes());
        self.initializer(raw_tensor(name, DataType::Int8, dims, data.len(), raw))
    }

    /// Adds a u8 initializer. Panics as [`Self::initializer_f32`].
    pub fn initializer_u8(&mut self, name: &str, dims: &[i64], data: &[u8]) -> &mut Self {
        self.initializer(raw_tensor(
            name,
            DataType::Uint8,
            dims,
            data.len(),
            data.to_vec(),
        ))
    }

    /// Adds an i32 initializer (e.g. a quantized bias). Panics as [`Self::initializer_f32`].
    pub fn initializer_i32(&mut self, name: &str, dims: &[i64], data: &[i32]) -> &mut Self {
        let raw = le_bytes(data, |x| x.to_le_bytes());
        self.initializer(raw_tensor(name, DataType::Int32, dims, data.len(), raw))
    }

    /// Adds an i64 initializer (e.g. a `Reshape` target shape). Panics as
    /// [`Self::initializer_f32`].
    pub fn initializer_i64(&mut self, name: &str, dims: &[i64], data: &[i64]) -> &mut Self {
        let raw = le_bytes(data, |x| x.to_le_bytes());
        self.initializer(raw_tensor(name, DataType::Int64, dims, data.len(), raw))
    }

    /// Adds a rank-0 f32 initializer (dims `[]`), e.g. a per-tensor scale.
    pub fn scalar_f32(&mut self, name: &str, value: f32) -> &mut Self {
        self.initializer_f32(name, &[], &[value])
    }

    /// Adds a rank-0 i8 initializer, e.g. a signed zero point.
    pub fn scalar_i8(&mut self, name: &str, value: i8) -> &mut Self {
        self.initializer_i8(name, &[], &[value])
    }

    /// Adds a rank-0 u8 initializer, e.g. an unsigned zero point.
    pub fn scalar_u8(&mut self, name: &str, value: u8) -> &mut Self {
        self.initializer_u8(name, &[], &[value])
    }

    /// Appends a node (nodes must be added in topological order) and returns a handle to set
    /// its name and attributes. Pass `""` for an omitted optional input.
    pub fn node(&mut self, op_type: &str, inputs: &[&str], outputs: &[&str]) -> NodeBuilder<'_> {
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            op_type: Some(op_type.to_owned()),
            ..Default::default()
        });
        NodeBuilder {
            node: self.graph.node.last_mut().expect("just pushed"),
        }
    }

    /// The graph built so far.
    pub fn graph(&self) -> &GraphProto {
        &self.graph
    }

    /// Wraps the graph into a model importing the default ONNX domain at version `opset`, of
    /// the IR version that opset needs ([`ir_version_for`]); `producer` becomes `producer_name` and this crate's version
    /// `producer_version`.
    pub fn finish(self, opset: i64, producer: &str) -> ModelProto {
        ModelProto {
            ir_version: Some(ir_version_for(opset)),
            producer_name: Some(producer.to_owned()),
            producer_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            graph: Some(self.graph),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(opset),
            }],
            ..Default::default()
        }
    }
}

/// A node just added by [`GraphBuilder::node`]; each method sets one field and returns the
/// handle, so calls chain. Dropping it keeps the node.
pub struct NodeBuilder<'a> {
    node: &'a mut NodeProto,
}

impl NodeBuilder<'_> {
    /// Sets the node's name.
    pub fn name(self, name: &str) -> Self {
        self.node.name = Some(name.to_owned());
        self
    }

    /// Sets the node's operator-set domain (default: "" = ONNX).
    pub fn domain(self, domain: &str) -> Self {
        self.node.domain = Some(domain.to_owned());
        self
    }

    /// Adds an INT attribute, e.g. `axis`.
    pub fn attr_int(self, name: &str, value: i64) -> Self {
        self.attr(name, AttributeType::Int, |a| a.i = Some(value))
    }

    /// Adds an INTS attribute, e.g. `kernel_shape`, `pads`, `strides`.
    pub fn attr_ints(self, name: &str, values: &[i64]) -> Self {
        self.attr(name, AttributeType::Ints, |a| a.ints = values.to_vec())
    }

    /// Adds a FLOAT attribute, e.g. Gemm's `alpha`.
    pub fn attr_float(self, name: &str, value: f32) -> Self {
        self.attr(name, AttributeType::Float, |a| a.f = Some(value))
    }

    /// Adds a FLOATS attribute.
    pub fn attr_floats(self, name: &str, values: &[f32]) -> Self {
        self.attr(name, AttributeType::Floats, |a| a.floats = values.to_vec())
    }

    /// Adds a STRING attribute, e.g. Conv's `auto_pad`.
    pub fn attr_string(self, name: &str, value: &str) -> Self {
        self.attr(name, AttributeType::String, |a| {
            a.s = Some(value.as_bytes().to_vec())
        })
    }

    fn attr(self, name: &str, ty: AttributeType, set: impl FnOnce(&mut AttributeProto)) -> Self {
        let mut a = AttributeProto {
            name: Some(name.to_owned()),
            r#type: Some(ty as i32),
            ..Default::default()
        };
        set(&mut a);
        self.node.attribute.push(a);
        self
    }
}

/// A tensor whose data is `raw` (fixed-width little-endian elements, row-major).
///
/// # Panics
/// If a dim is negative or `len` (the element count of `raw`) is not the product of `dims`.
pub fn raw_tensor(
    name: &str,
    elem: DataType,
    dims: &[i64],
    len: usize,
    raw: Vec<u8>,
) -> TensorProto {
    assert!(
        dims.iter().all(|&d| d >= 0),
        "initializer {name}: negative dim in {dims:?}"
    );
    let want: i64 = dims.iter().product();
    assert_eq!(
        want as usize, len,
        "initializer {name}: shape {dims:?} holds {want} elements, data has {len}"
    );
    TensorProto {
        dims: dims.to_vec(),
        data_type: Some(elem as i32),
        name: Some(name.to_owned()),
        raw_data: Some(raw),
        ..Default::default()
    }
}

fn le_bytes<T: Copy, const N: usize>(data: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    data.iter().flat_map(|&x| f(x)).collect()
}

fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => dimension::Value::DimValue(*n),
                Dim::Symbolic(s) => dimension::Value::DimParam(s.clone()),
            }),
            denotation: None,
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_owned()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: None,
        }),
        doc_string: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{read_model, write_model};
    use prost::Message;

    fn tiny() -> ModelProto {
        let mut g = GraphBuilder::new("tiny");
        g.input_f32("x", &[Dim::Symbolic("N".into()), 4.into()])
            .output_f32("y", &["N".into(), Dim::Fixed(2)])
            .initializer_f32("w", &[2, 4], &[0.5; 8])
            .initializer_i8("q", &[3], &[-128, 0, 127])
            .initializer_u8("z", &[2], &[0, 255])
            .initializer_i32("b", &[1], &[-70000])
            .initializer_i64("s", &[2], &[-1, i64::MAX])
            .scalar_f32("scale", 0.25)
            .scalar_i8("zp", -3)
            .scalar_u8("uzp", 200);
        g.node("Gemm", &["x", "w"], &["y"])
            .name("fc")
            .attr_int("transB", 1)
            .attr_float("alpha", 1.5)
            .attr_ints("perm", &[1, 0])
            .attr_floats("fs", &[0.5])
            .attr_string("mode", "x");
        g.finish(13, "smelt")
    }

    #[test]
    fn round_trip_through_bytes_and_file() {
        let m = tiny();
        let bytes = m.encode_to_vec();
        assert_eq!(read_model(&bytes).unwrap(), m);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/tiny.onnx");
        write_model(&path, &m).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(read_model(&std::fs::read(&path).unwrap()).unwrap(), m);
        // Only the model is left behind: no temporary file.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn builder_fills_the_fields_onnx_needs() {
        let m = tiny();
        assert_eq!(m.ir_version(), 8);
        // FLOAT8 and INT4 tensors come with opsets 19 and 21, which need IR 9 and 10.
        assert_eq!(
            [13, 18, 19, 21, 23].map(crate::ir_version_for),
            [8, 8, 9, 10, 11]
        );
        assert_eq!(m.producer_name(), "smelt");
        assert_eq!(m.opset_import[0].version(), 13);
        let g = m.graph.as_ref().unwrap();
        let init = |n: &str| g.initializer.iter().find(|t| t.name() == n).unwrap();
        assert_eq!(init("b").raw_data(), (-70000i32).to_le_bytes());
        assert_eq!(init("b").data_type(), DataType::Int32 as i32);
        assert_eq!(init("q").raw_data(), [0x80, 0x00, 0x7F]);
        assert_eq!(init("s").raw_data()[8..], i64::MAX.to_le_bytes());
        assert!(init("scale").dims.is_empty());
        assert_eq!(init("scale").raw_data(), 0.25f32.to_le_bytes());
        assert_eq!(init("uzp").raw_data(), [200]);

        let n = &g.node[0];
        assert_eq!((n.op_type(), n.name()), ("Gemm", "fc"));
        let a = &n.attribute;
        assert_eq!(
            (a[0].name(), a[0].r#type(), a[0].i()),
            ("transB", AttributeType::Int, 1)
        );
        assert_eq!((a[1].r#type(), a[1].f()), (AttributeType::Float, 1.5));
        assert_eq!(
            (a[2].r#type(), &a[2].ints[..]),
            (AttributeType::Ints, &[1, 0][..])
        );
        assert_eq!(a[4].s(), b"x");

        let Some(type_proto::Value::TensorType(t)) = &g.input[0].r#type.as_ref().unwrap().value
        else {
            panic!("tensor type")
        };
        assert_eq!(t.elem_type(), DataType::Float as i32);
        let dims = &t.shape.as_ref().unwrap().dim;
        assert_eq!(dims[0].value, Some(dimension::Value::DimParam("N".into())));
        assert_eq!(dims[1].value, Some(dimension::Value::DimValue(4)));
    }

    #[test]
    #[should_panic(expected = "holds 6 elements, data has 5")]
    fn initializer_must_fill_its_shape() {
        GraphBuilder::new("g").initializer_f32("w", &[2, 3], &[0.0; 5]);
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(read_model(&[0x0A, 0xFF]).is_err());
    }
}
