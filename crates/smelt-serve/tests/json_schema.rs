//! JSON Schema constrained decoding without a model: which texts a compiled schema's grammar
//! accepts and refuses, which schemas are refused (and where), and random walks through the
//! grammar (a random byte among those allowed, until the object closes) whose every text
//! serde_json reads and an independent check of the schema accepts; unions whose
//! alternatives start alike (two objects) are read both ways until the text parts them.

mod walk;

use serde_json::Value;
use smelt_quant::rng::{Rng, test_seed};
use smelt_serve::json_mode::{JsonState, MAX_DEPTH, MAX_WHITESPACE, TokenBytes};
use smelt_serve::json_schema::{Grammar, Json, compile_calls, compile_choice};

/// A film, as pydantic writes a model with a nested, recursive one: `$defs`, `anyOf` with
/// null for optional fields, enums, bounds.
const FILM: &str = r##"{
  "type": "object", "title": "Film",
  "properties": {
    "title": {"type": "string", "maxLength": 8, "title": "Title"},
    "year": {"type": "integer"},
    "score": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": null},
    "genre": {"enum": ["drama", "comedy", null, 3]},
    "tags": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 3},
             "minItems": 1, "maxItems": 3},
    "cast": {"type": "array", "items": {"$ref": "#/$defs/Person"}, "maxItems": 2},
    "flags": {"type": "object", "additionalProperties": {"type": "boolean"}},
    "notes": {}
  },
  "required": ["title", "year", "tags"],
  "$defs": {"Person": {"type": "object", "properties": {
    "name": {"type": "string"},
    "boss": {"anyOf": [{"$ref": "#/$defs/Person"}, {"type": "null"}]}
  }, "required": ["name"]}}
}"##;

use walk::{VALUES, random_walk, read, refused_schema, schema, weighted_walk, whole};

#[test]
fn instances_are_accepted_in_schema_order() {
    let g = schema(FILM);
    for ok in [
        r##"{"title":"Up","year":2009,"tags":["a"]}"##,
        r##"{"title": "Up", "year": -1, "score": 8.5e1, "genre": null, "tags": ["ab","é日","x"]}"##,
        r##"{"title":"","year":0,"genre":3,"tags":["\"q"],"cast":[{"name":"A","boss":{"name":"B","boss":null}}]}"##,
        r##"{"title":"Up","year":1,"tags":["a"],"flags":{"x":true,"y":false},"notes":[1,{"a":null}]}"##,
        r##"{"title":"12345678","year":1,"genre":"comedy","tags":["a"],"cast":[]}"##,
        "{\"title\":\"\\ud83d\\ude00\",\"year\":1,\"tags\":[\"a\"]}",
    ] {
        assert!(whole(&g, ok), "{ok}");
    }
}

#[test]
fn texts_outside_the_schema_are_refused() {
    let g = schema(FILM);
    for bad in [
        // A required property missing, or out of order, or not listed.
        r##"{"title":"Up","tags":["a"]}"##,
        r##"{"year":1,"title":"Up","tags":["a"]}"##,
        r##"{"title":"Up","year":1,"tags":["a"],"extra":1}"##,
        // Wrong types and values.
        r##"{"title":"Up","year":1.5,"tags":["a"]}"##,
        r##"{"title":"Up","year":"1","tags":["a"]}"##,
        r##"{"title":"Up","year":1,"genre":"horror","tags":["a"]}"##,
        r##"{"title":"Up","year":1,"genre":33,"tags":["a"]}"##,
        r##"{"title":"Up","year":1,"score":true,"tags":["a"]}"##,
        // Bounds.
        r##"{"title":"123456789","year":1,"tags":["a"]}"##,
        r##"{"title":"Up","year":1,"tags":[]}"##,
        r##"{"title":"Up","year":1,"tags":[""]}"##,
        r##"{"title":"Up","year":1,"tags":["abcd"]}"##,
        r##"{"title":"Up","year":1,"tags":["a","b","c","d"]}"##,
        r##"{"title":"Up","year":1,"tags":["a"],"cast":[{"name":"A"},{"name":"B"},{"name":"C"}]}"##,
        // The nested model and the free object's values.
        r##"{"title":"Up","year":1,"tags":["a"],"cast":[{"boss":null}]}"##,
        r##"{"title":"Up","year":1,"tags":["a"],"flags":{"x":1}}"##,
        // Lone surrogate escapes, which JSON readers refuse.
        "{\"title\":\"\\ud83d\",\"year\":1,\"tags\":[\"a\"]}",
        "{\"title\":\"\\ude00\",\"year\":1,\"tags\":[\"a\"]}",
        // Anything after the object.
        r##"{"title":"Up","year":1,"tags":["a"]} "##,
    ] {
        assert!(!whole(&g, bad), "{bad}");
    }
    // Invalid UTF-8 inside strings: a surrogate, an overlong form, past U+10FFFF.
    for bytes in [
        &b"\xed\xa0\x80"[..],
        b"\xe0\x80\x80",
        b"\xf4\x90\x80\x80",
        b"\xc0\xaf",
    ] {
        let mut s = JsonState::new(&g);
        assert!(s.feed(&g, b"{\"title\":\""));
        assert!(!s.feed(&g, bytes), "{bytes:?}");
    }
}

#[test]
fn optional_properties_may_be_skipped_but_not_reordered() {
    let g = schema(
        r##"{"properties": {"a": {"type": "integer"}, "b": {"type": "integer"},
            "c": {"type": "integer"}}, "required": ["b"]}"##,
    );
    for ok in [
        r##"{"b":1}"##,
        r##"{"a":1,"b":2}"##,
        r##"{"b":1,"c":2}"##,
        r##"{"a":1,"b":2,"c":3}"##,
    ] {
        assert!(whole(&g, ok), "{ok}");
    }
    for bad in [
        r##"{}"##,
        r##"{"a":1}"##,
        r##"{"c":1,"b":2}"##,
        r##"{"b":1,"b":2}"##,
        r##"{"b":1,}"##,
    ] {
        assert!(!whole(&g, bad), "{bad}");
    }
}

#[test]
fn enums_that_are_prefixes_of_each_other_end_at_the_next_byte() {
    let g =
        schema(r##"{"properties": {"x": {"type": "array", "items": {"enum": [1, 12, "a"]}}}}"##);
    for ok in [
        r##"{"x":[1,12,1]}"##,
        r##"{"x":[12 , 1 ]}"##,
        r##"{"x":["a",1]}"##,
    ] {
        assert!(whole(&g, ok), "{ok}");
    }
    for bad in [
        r##"{"x":[13]}"##,
        r##"{"x":[121]}"##,
        r##"{"x":["b"]}"##,
        r##"{"x":[1.0]}"##,
    ] {
        assert!(!whole(&g, bad), "{bad}");
    }
}

#[test]
fn recursive_and_free_schemas() {
    let tree = schema(
        r##"{"type": "object", "properties": {"v": {"type": "integer"},
            "kids": {"type": "array", "items": {"$ref": "#"}}}, "required": ["v"]}"##,
    );
    assert!(whole(
        &tree,
        r##"{"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4,"kids":[]}]}]}"##
    ));
    assert!(!whole(&tree, r##"{"v":1,"kids":[{"kids":[]}]}"##));
    let empty = schema(r##"{"type": "object", "additionalProperties": false}"##);
    assert!(whole(&empty, "{}") && whole(&empty, "{ }"));
    assert!(!whole(&empty, r##"{"a":1}"##));
    let any = schema(r##"{"type": "object"}"##);
    assert_eq!(any, Grammar::json_object());
    assert!(whole(&any, r##"{"a":[1,{"b":"c"}],"d":null}"##));
    // Type lists and nullable are unions too.
    let g = schema(
        r##"{"properties": {"a": {"type": ["string", "null"]},
            "b": {"type": "integer", "nullable": true}}}"##,
    );
    assert!(whole(&g, r##"{"a":null,"b":null}"##) && whole(&g, r##"{"a":"x","b":-3}"##));
    assert!(!whole(&g, r##"{"a":1}"##) && !whole(&g, r##"{"b":"x"}"##));
}

#[test]
fn unsupported_or_impossible_schemas_are_refused_with_where() {
    for (text, says) in [
        (
            r##"{"properties": {"a": {"type": "integer", "multipleOf": 2}}}"##,
            r##"at /properties/a: keyword "multipleOf" is not supported"##,
        ),
        (r##"{"type": "array"}"##, "the root must be an object"),
        (
            r##"{"properties": {"a": {"anyOf": []}}}"##,
            "at /properties/a: an empty anyOf",
        ),
        (
            r##"{"properties": {"a": {"type": []}}}"##,
            "at /properties/a: an empty anyOf, oneOf or type list",
        ),
        (
            r##"{"properties": {"a": {"enum": ["ab", "c"], "maxLength": 1}}}"##,
            r##"enum or const together with "maxLength""##,
        ),
        (
            r##"{"anyOf": [{"type": "object"}, {"type": "null"}]}"##,
            "the root must be an object",
        ),
        (
            r##"{"properties": {"a": {}}, "required": ["b"]}"##,
            r##""b" is required but not"##,
        ),
        (
            r##"{"properties": {"a": {"$ref": "#/$defs/x"}}}"##,
            "points at nothing",
        ),
        (
            r##"{"properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {"$ref": "#/$defs/x"}}}"##,
            "refers back to itself",
        ),
        (
            r##"{"properties": {"a": {"type": "string", "minLength": 3, "maxLength": 2}}}"##,
            "over",
        ),
        (r##"{"properties": {"a": {"enum": []}}}"##, "empty enum"),
        (
            r##"{"properties": {"a": {"type": "integer", "enum": ["x"]}}}"##,
            "not of its type",
        ),
        (r##"{"properties": {"a": false}}"##, "allows no value"),
        (
            r##"{"properties": {"a": {"type": "date"}}}"##,
            "unknown type",
        ),
        (
            r##"{"properties": {"a": {"$ref": "http://x/y"}}}"##,
            "only references inside",
        ),
    ] {
        let e = refused_schema(text);
        assert!(e.contains(says), "{text}: {e}");
    }
    // A literal longer than the recognizer counts is refused.
    let long = format!(
        r##"{{"properties": {{"a": {{"const": "{}"}}}}}}"##,
        "x".repeat(5000)
    );
    assert!(refused_schema(&long).contains("over 4096 bytes"));
    // Nesting past the bound is refused, not a stack overflow.
    let deep = format!("{}{{}}{}", r#"{"items":"#.repeat(70), "}".repeat(70));
    let e = refused_schema(&format!(r##"{{"properties": {{"a": {deep}}}}}"##));
    assert!(e.contains("nested deeper"), "{e}");
    // A pattern whose counted repetitions multiply out to 10⁹ NFA states is refused at once
    // (its size limit), not built until memory runs out.
    let t = std::time::Instant::now();
    let e = refused_schema(
        r##"{"properties": {"a": {"type": "string", "pattern": "^(?:(?:a{1000}){1000}){1000}$"}}}"##,
    );
    assert!(e.contains("pattern") && e.contains("exceeded limit"), "{e}");
    assert!(t.elapsed().as_secs() < 10, "{:?}", t.elapsed());
}

/// Recursive schemas whose values need nested containers: `a` is one object deeper, `b` three
/// arrays, `l` a list of two-deep arrays. Near the nesting bound, only what can still close
/// within it may start.
const DEEP: &str = r##"{"$ref": "#/$defs/N", "$defs": {
  "N": {"type": "object", "properties": {"a": {"$ref": "#/$defs/N"}, "b": {"$ref": "#/$defs/D3"},
        "l": {"type": "array", "items": {"$ref": "#/$defs/D2"}}}},
  "D3": {"type": "array", "items": {"$ref": "#/$defs/D2"}, "minItems": 1},
  "D2": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
         "minItems": 1}}}"##;

#[test]
fn values_that_could_not_close_within_the_nesting_bound_never_start() {
    let g = schema(DEEP);
    // Inside k objects `{"a":` and one more `{`: that object is container k + 1 and its
    // value's outermost container k + 2, so three arrays fit while k + 4 <= MAX_DEPTH.
    let accepts = |text: &str| {
        let mut s = JsonState::new(&g);
        s.feed(&g, text.as_bytes())
    };
    for k in 0..MAX_DEPTH + 2 {
        let open = format!("{}{{", r#"{"a":"#.repeat(k));
        let closes = "}".repeat(k + 1);
        assert_eq!(accepts(&open), k < MAX_DEPTH, "k = {k}");
        if k >= MAX_DEPTH {
            continue;
        }
        assert!(whole(&g, &format!("{open}{closes}")), "k = {k}");
        assert_eq!(
            accepts(&format!(r#"{open}"b""#)),
            k + 4 <= MAX_DEPTH,
            "b at k = {k}"
        );
        assert_eq!(
            accepts(&format!(r#"{open}"a""#)),
            k + 2 <= MAX_DEPTH,
            "a at k = {k}"
        );
        assert_eq!(
            accepts(&format!(r#"{open}"l""#)),
            k + 2 <= MAX_DEPTH,
            "l at k = {k}"
        );
        // The list may open where its items could not: then it can only close empty.
        if k + 2 <= MAX_DEPTH {
            let list = format!(r#"{open}"l":["#);
            assert_eq!(
                accepts(&format!("{list}[")),
                k + 4 <= MAX_DEPTH,
                "item at k = {k}"
            );
            assert!(
                whole(&g, &format!("{list}]{closes}")),
                "empty list at k = {k}"
            );
        }
        if k + 4 <= MAX_DEPTH {
            assert!(
                whole(&g, &format!(r#"{open}"b":[[[1]]]{closes}"#)),
                "k = {k}"
            );
        }
    }
    // Walks that favour opening (keys, `[`, `{`) reach the bound and must always find a way
    // to close: a walk with no byte allowed fails.
    let mut rng = Rng::new(test_seed());
    let mut deepest = 0;
    for _ in 0..100 {
        let text = weighted_walk(&g, &mut rng, |b, len| match b {
            b'a' => 1000,
            b'"' | b'[' | b'{' | b':' => 40,
            b'b' | b'l' | b',' => 10,
            b'}' | b']' => 1 + len as u64 / 64,
            _ => 2,
        });
        let (mut depth, mut most) = (0i32, 0i32);
        for &b in &text {
            depth += i32::from(matches!(b, b'{' | b'[')) - i32::from(matches!(b, b'}' | b']'));
            most = most.max(depth);
        }
        deepest = deepest.max(most);
        read(&text).expect("a walk is JSON");
    }
    assert!(
        deepest >= MAX_DEPTH as i32 - 1,
        "the walks reached only {deepest}"
    );
}

#[test]
fn schemas_with_no_finite_or_shallow_enough_instance_are_refused() {
    for (text, says) in [
        (
            r##"{"properties": {"next": {"$ref": "#"}}, "required": ["next"]}"##,
            "at /properties/next/$ref: no finite value meets the schema",
        ),
        (
            r##"{"properties": {"a": {"$ref": "#/$defs/L"}}, "required": ["a"],
                 "$defs": {"L": {"type": "array", "items": {"$ref": "#/$defs/L"},
                 "minItems": 1}}}"##,
            "no finite value",
        ),
        (
            r##"{"properties": {"a": {"$ref": "#/$defs/A"}}, "required": ["a"], "$defs": {
                 "A": {"properties": {"b": {"$ref": "#/$defs/B"}}, "required": ["b"]},
                 "B": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "array",
                       "items": {"$ref": "#/$defs/B"}, "minItems": 2}]}}}"##,
            "no finite value",
        ),
    ] {
        let e = refused_schema(text);
        assert!(e.contains(says), "{text}: {e}");
    }
    // Required objects nested 39 deep (the innermost value `{}` may be a number): finite, but
    // past the bound.
    let deep = format!(
        "{}{{}}{}",
        r#"{"properties": {"a": "#.repeat(39),
        r#"}, "required": ["a"]}"#.repeat(39)
    );
    let e = refused_schema(&deep);
    assert!(
        e.contains("nests 39 containers deep, over the 32 allowed"),
        "{e}"
    );
    // A huge minItems is one required value, not billions (this compiled into a list of
    // 2^32 entries, and the server ran out of memory).
    let t = std::time::Instant::now();
    schema(r##"{"properties": {"a": {"type": "array", "minItems": 4294967295}}}"##);
    assert!(t.elapsed().as_secs() < 5, "{:?}", t.elapsed());
    // A forced call's tool that could never be called is refused, naming it.
    let endless: Json = serde_json::from_str(
        r##"{"type": "object", "properties": {"n": {"$ref": "#"}}, "required": ["n"]}"##,
    )
    .unwrap();
    let e = compile_calls(&[("ok", None), ("endless", Some(&endless))], 4)
        .expect_err("an uncallable tool")
        .to_string();
    assert!(
        e.contains("at /tools/1/function/parameters: no finite value"),
        "{e}"
    );
    // The same recursion with a way out compiles, and the way out is taken.
    let g = schema(
        r##"{"properties": {"next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
             "required": ["next"]}"##,
    );
    assert!(whole(&g, r#"{"next":{"next":null}}"#));
    assert_eq!(g.height[g.root as usize], 1);
}

#[test]
fn readings_that_meet_again_are_one() {
    // pydantic's `List[Union[int, float]]`: an integer item is read both ways, and the two
    // readings are the same again once it closes.
    let g = schema(
        r##"{"type": "object", "properties": {"xs": {"type": "array", "items":
            {"anyOf": [{"type": "integer"}, {"type": "number"}]}}}, "required": ["xs"]}"##,
    );
    let mut s = JsonState::new(&g);
    assert!(s.feed(&g, b"{\"xs\": [1"));
    assert_eq!(s.readings(), 2, "1 is read as an integer and as a number");
    for _ in 0..100 {
        assert!(s.feed(&g, b", 1"));
        assert!(s.readings() <= 2, "{} readings", s.readings());
    }
    assert!(
        s.feed(&g, b", 1.5]}") && s.done(),
        "a number after 100 integers"
    );
}

/// Pets as pydantic writes a discriminated `Union[Cat, Dog]`, an owner that is one of two
/// objects sharing their first property (or null), and an integer-or-number.
const PETS: &str = r##"{"type": "object", "properties": {
  "pets": {"type": "array", "items": {
    "oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}],
    "discriminator": {"propertyName": "pet_type",
                      "mapping": {"cat": "#/$defs/Cat", "dog": "#/$defs/Dog"}}}},
  "owner": {"anyOf": [
    {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
     "required": ["name", "age"], "additionalProperties": false},
    {"type": "object", "properties": {"name": {"type": "string"}, "company": {"type": "string"}},
     "required": ["name", "company"], "additionalProperties": false},
    {"type": "null"}]},
  "weight": {"anyOf": [{"type": "integer"}, {"type": "number"}]}
}, "required": ["pets", "owner"],
"$defs": {
  "Cat": {"type": "object", "title": "Cat", "required": ["pet_type", "meows"], "properties": {
    "pet_type": {"const": "cat", "type": "string"}, "meows": {"type": "integer"}}},
  "Dog": {"type": "object", "title": "Dog", "required": ["pet_type", "barks"], "properties": {
    "pet_type": {"const": "dog", "type": "string"}, "barks": {"type": "number"}}}}}"##;

#[test]
fn unions_of_alike_alternatives_are_read_both_ways_until_they_part() {
    let g = schema(PETS);
    for ok in [
        r#"{"pets":[{"pet_type":"cat","meows":3},{"pet_type":"dog","barks":1.5}],"owner":null}"#,
        r#"{"pets":[],"owner":{"name":"A","age":3},"weight":2}"#,
        r#"{"pets":[],"owner":{"name":"A","company":"B"},"weight":2.5e1}"#,
    ] {
        assert!(whole(&g, ok), "{ok}");
    }
    for bad in [
        r#"{"pets":[{"pet_type":"cat","barks":1}],"owner":null}"#,
        r#"{"pets":[{"pet_type":"dog","meows":1}],"owner":null}"#,
        r#"{"pets":[{"pet_type":"cow","meows":1}],"owner":null}"#,
        r#"{"pets":[],"owner":{"name":"A"}}"#,
        r#"{"pets":[],"owner":{"name":"A","age":3,"company":"B"}}"#,
        r#"{"pets":[],"owner":{"age":3}}"#,
        r#"{"pets":[],"owner":null,"weight":"1"}"#,
    ] {
        assert!(!whole(&g, bad), "{bad}");
    }
    // Two readings while the pet could be either, one once its type's first letter is out.
    let mut s = JsonState::new(&g);
    assert!(s.feed(&g, br#"{"pets":[{"pet_type":""#));
    assert_eq!(s.readings(), 2);
    assert!(s.feed(&g, b"c"));
    assert_eq!(s.readings(), 1);
    assert!(!s.allows(&g, br#"at","barks"#) && s.allows(&g, br#"at","meows":1}"#));
}

/// An independent reading of [`PETS`].
fn is_pets(v: &Value) -> bool {
    let Some(o) = v.as_object() else { return false };
    let pet = |p: &Value| {
        let Some(p) = p.as_object() else { return false };
        let (want, number) = match p.get("pet_type").and_then(Value::as_str) {
            Some("cat") => ("meows", p.get("meows").and_then(Value::as_f64)),
            Some("dog") => ("barks", p.get("barks").and_then(Value::as_f64)),
            _ => return false,
        };
        p.len() == 2 && number.is_some_and(|n| want == "barks" || n.fract() == 0.0)
    };
    let owner = |w: &Value| {
        w.is_null()
            || w.as_object().is_some_and(|w| {
                w.len() == 2
                    && w.get("name").is_some_and(Value::is_string)
                    && (w
                        .get("age")
                        .and_then(Value::as_f64)
                        .is_some_and(|a| a.fract() == 0.0)
                        || w.get("company").is_some_and(Value::is_string))
            })
    };
    o.keys()
        .all(|k| ["pets", "owner", "weight"].contains(&k.as_str()))
        && o["pets"].as_array().is_some_and(|p| p.iter().all(pet))
        && owner(&o["owner"])
        && o.get("weight").is_none_or(Value::is_number)
}

/// An independent reading of [`FILM`] on serde_json's value: what the schema asks.
fn is_film(v: &Value) -> bool {
    fn person(v: &Value) -> bool {
        let Some(o) = v.as_object() else { return false };
        o.keys().all(|k| k == "name" || k == "boss")
            && o.get("name").is_some_and(Value::is_string)
            && o.get("boss").is_none_or(|b| b.is_null() || person(b))
    }
    let chars = |v: &Value, lo: usize, hi: usize| {
        v.as_str()
            .is_some_and(|s| (lo..=hi).contains(&s.chars().count()))
    };
    let Some(o) = v.as_object() else { return false };
    let listed = [
        "title", "year", "score", "genre", "tags", "cast", "flags", "notes",
    ];
    o.keys().all(|k| listed.contains(&k.as_str()))
        && chars(&o["title"], 0, 8)
        // An integer is a number with no fraction (a long one reads as an f64).
        && o["year"].as_f64().is_some_and(|y| y.fract() == 0.0)
        && o.get("score").is_none_or(|s| s.is_number() || s.is_null())
        && o.get("genre").is_none_or(|g| {
            [Value::from("drama"), Value::from("comedy"), Value::Null, Value::from(3)].contains(g)
        })
        && o["tags"]
            .as_array()
            .is_some_and(|t| (1..=3).contains(&t.len()) && t.iter().all(|s| chars(s, 1, 3)))
        && o.get("cast")
            .is_none_or(|c| c.as_array().is_some_and(|c| c.len() <= 2 && c.iter().all(person)))
        && o.get("flags")
            .is_none_or(|f| f.as_object().is_some_and(|f| f.values().all(Value::is_boolean)))
}

#[test]
fn random_walks_are_instances_serde_json_reads() {
    let g = schema(FILM);
    let mut rng = Rng::new(test_seed());
    let (mut longest, mut with_cast) = (0, 0);
    for _ in 0..1000 {
        let text = random_walk(&g, &mut rng);
        let Some(v) = read(&text) else { continue };
        assert!(is_film(&v), "{v}");
        longest = longest.max(text.len());
        with_cast += usize::from(
            v.get("cast")
                .is_some_and(|c| !c.as_array().unwrap().is_empty()),
        );
    }
    // The walks reach the nested model, and whitespace runs stay bounded.
    assert!(
        with_cast >= 10,
        "{with_cast} of 1000 walks wrote a cast member"
    );
    // Unions of objects: both pets come out, each an instance of its own model.
    let g = schema(PETS);
    let (mut cats, mut dogs) = (0, 0);
    for _ in 0..1000 {
        let text = random_walk(&g, &mut rng);
        let Some(v) = read(&text) else { continue };
        assert!(is_pets(&v), "{v}");
        for p in v["pets"].as_array().unwrap() {
            cats += usize::from(p["pet_type"] == "cat");
            dogs += usize::from(p["pet_type"] == "dog");
        }
    }
    assert!(
        cats >= 10 && dogs >= 10,
        "{cats} cats and {dogs} dogs in 1000 walks"
    );
    let g = Grammar::json_object();
    for _ in 0..300 {
        let text = random_walk(&g, &mut rng);
        let Some(v) = read(&text) else { continue };
        assert!(v.is_object());
        let run = text
            .split(|b| !b" \n\t".contains(b))
            .map(<[u8]>::len)
            .max()
            .unwrap_or(0);
        assert!(run <= MAX_WHITESPACE as usize, "{run} spaces in a row");
    }
    eprintln!(
        "longest walk {longest} bytes; {with_cast}/1000 with a cast; {cats} cats, {dogs} dogs"
    );
}

#[test]
fn masks_equal_trying_every_token() {
    let mut rng = Rng::new(test_seed());
    // A byte-level vocabulary: every single byte, then random pieces over JSON's bytes, words
    // and UTF-8, with shared prefixes; a few special tokens and an empty one.
    let pieces: [&[u8]; 30] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b" ",
        b"\n",
        b"\\",
        b"u",
        b"d8",
        b"de",
        b"pet",
        b"_type",
        b"cat",
        b"dog",
        b"name",
        b"1",
        b"-",
        b".5",
        b"e+",
        b"\xc3\xa9",
        b"\xe6\x97",
        b"2024",
        b"-0",
        b"9",
        b"@",
        b".",
        b"T",
    ];
    let mut bytes: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    for _ in 0..4000 {
        let n = 1 + rng.next_u64() % 4;
        bytes.push(
            (0..n)
                .flat_map(|_| pieces[(rng.next_u64() % 30) as usize].to_vec())
                .collect(),
        );
    }
    bytes.push(vec![]);
    let special: Vec<bool> = (0..bytes.len()).map(|t| t % 997 == 5).collect();
    let table = TokenBytes::from_tokens(bytes.clone(), special.clone());
    let mut checked = 0;
    for text in [FILM, PETS, VALUES] {
        let g = schema(text);
        for _ in 0..40 {
            // A state part-way through a random instance.
            let walk = random_walk(&g, &mut rng);
            let cut = (rng.next_u64() % walk.len() as u64) as usize;
            let mut state = JsonState::new(&g);
            assert!(state.feed(&g, &walk[..cut]));
            let mut logits = vec![0f32; bytes.len() + 3];
            let left = table.mask(&g, &state, &mut logits);
            for (t, l) in logits.iter().enumerate() {
                let want = t < bytes.len()
                    && !special[t]
                    && !bytes[t].is_empty()
                    && state.allows(&g, &bytes[t]);
                assert_eq!(
                    l.is_finite(),
                    want,
                    "token {t} {:?} after {:?}",
                    bytes.get(t),
                    String::from_utf8_lossy(&walk[..cut])
                );
            }
            assert_eq!(left, logits.iter().filter(|l| l.is_finite()).count());
            checked += 1;
        }
    }
    assert_eq!(checked, 120);
}

#[test]
fn forced_tool_calls_are_arrays_of_named_calls() {
    let json = |t: &str| serde_json::from_str::<Json>(t).unwrap();
    let weather = json(
        r##"{"type": "object", "properties": {"city": {"$ref": "#/$defs/city"}},
             "required": ["city"], "$defs": {"city": {"type": "string", "maxLength": 5}}}"##,
    );
    let g = compile_calls(&[("get_weather", Some(&weather)), ("ping", None)], u32::MAX).unwrap();
    for ok in [
        r#"[{"name":"get_weather","parameters":{"city":"Paris"}}]"#,
        r#"[{"name":"ping","parameters":{}},{"name":"ping","parameters":{"any":[1]}}]"#,
    ] {
        assert!(whole(&g, ok), "{ok}");
    }
    for bad in [
        "[]",
        r#"[{"name":"get_weather","parameters":{"city":"Lisbon"}}]"#,
        r#"[{"name":"get_weather","parameters":{}}]"#,
        r#"[{"name":"nope","parameters":{}}]"#,
        r#"[{"parameters":{},"name":"ping"}]"#,
    ] {
        assert!(!whole(&g, bad), "{bad}");
    }
    // Without parallel calls (`parallel_tool_calls: false`), one call.
    let one = compile_calls(&[("get_weather", Some(&weather)), ("ping", None)], 1).unwrap();
    assert!(whole(&one, r#"[{"name":"ping","parameters":{}}]"#));
    assert!(!whole(
        &one,
        r#"[{"name":"ping","parameters":{}},{"name":"ping","parameters":{}}]"#
    ));
    // `parameters: {}` means no parameters: any object, as OpenAI reads it.
    let g = compile_calls(&[("f", Some(&json("{}")))], u32::MAX).unwrap();
    assert!(whole(&g, r#"[{"name":"f","parameters":{"x":1}}]"#));
    // Every tool of many can be called: each is a reading until the names part.
    let names: Vec<String> = (0..64).map(|i| format!("tool{i}")).collect();
    let many: Vec<(&str, Option<&Json>)> = names.iter().map(|n| (n.as_str(), None)).collect();
    let g = compile_calls(&many, u32::MAX).unwrap();
    assert!(whole(
        &g,
        r#"[{"name":"tool63","parameters":{}},{"name":"tool0","parameters":{}}]"#
    ));
    let too_many: Vec<(&str, Option<&Json>)> = (0..65).map(|_| ("t", None)).collect();
    assert!(compile_calls(&too_many, u32::MAX).is_err());
    // Errors point into the tool's own parameters.
    let bad = json(r#"{"type": "object", "properties": {"a": {"multipleOf": 2}}}"#);
    let e = compile_calls(&[("ping", None), ("f", Some(&bad))], u32::MAX)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/tools/1/function/parameters/properties/a"),
        "{e}"
    );
    let e = compile_calls(&[("f", Some(&json(r#"{"type": "string"}"#)))], u32::MAX).unwrap_err();
    assert!(e.to_string().contains("must be an object"), "{e}");
}

#[test]
fn choices_are_their_exact_texts() {
    let choices = ["positive", "negative", "neutral 😐"].map(String::from);
    let g = compile_choice(&choices).unwrap();
    for c in &choices {
        assert!(whole(&g, c), "{c}");
    }
    for bad in [
        " positive",
        "pos",
        "positive.",
        "\"positive\"",
        "Neutral 😐",
        "",
    ] {
        assert!(!whole(&g, bad), "{bad:?}");
    }
    // Where a choice starts another, the text may stop after the shorter or go on.
    let g = compile_choice(&["yes".into(), "yes!".into(), "no".into()]).unwrap();
    let mut s = JsonState::new(&g);
    assert!(s.feed(&g, b"yes"));
    assert!(s.may_end() && !s.done(), "yes may stop or go on");
    assert!(s.allows(&g, b"!") && !s.allows(&g, b"?"));
    assert!(s.feed(&g, b"!") && s.done());
    let mut s = JsonState::new(&g);
    assert!(s.feed(&g, b"n") && !s.may_end());
    assert!(s.feed(&g, b"o") && s.done());
    assert!(compile_choice(&[]).is_err() && compile_choice(&["".into()]).is_err());
}
