//! How deep the shallowest instance of each node nests: the recognizer bounds nesting at
//! [`MAX_DEPTH`] containers, so a value may only start where its shallowest instance still
//! fits, or the model could write a key or `[` it can never finish. A node with no finite
//! instance at all (a required `$ref` back to itself) gets [`NO_INSTANCE`] and is never
//! started; a root like that is refused when compiled.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Grammar, Node, NodeId, SchemaError};
use crate::json_mode::MAX_DEPTH;

/// The height of a node that has no finite instance.
pub const NO_INSTANCE: u32 = u32::MAX;

/// (nodes,) the containers nested in each node's shallowest instance, itself included (0 for
/// strings, numbers and literals, whose text the recognizer reads flat).
///
/// An object or array needs all of its required values ("and": one more than the deepest of
/// them), a union any one alternative ("or": the shallowest), so the heights come out of a
/// Dijkstra-like pass over the graph in rising order: O((nodes + edges) log nodes).
pub fn heights(g: &Grammar) -> Vec<u32> {
    let n = g.nodes.len();
    let mut height = vec![NO_INSTANCE; n];
    // (nodes,) how many required values each container still waits for.
    let mut waiting = vec![0usize; n];
    // (nodes,) the nodes that need each node: containers (once per edge) and unions.
    let mut needed_by: Vec<Vec<NodeId>> = vec![Vec::new(); n];
    let mut ready = BinaryHeap::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let needs = required_values(node);
        match node {
            Node::Union { .. } => {}
            Node::Object { .. } | Node::Array { .. } if !needs.is_empty() => {
                waiting[i] = needs.len();
            }
            Node::Object { .. } | Node::Array { .. } => ready.push(Reverse((1, i as NodeId))),
            _ => ready.push(Reverse((0, i as NodeId))),
        }
        for c in needs {
            needed_by[c as usize].push(i as NodeId);
        }
    }
    while let Some(Reverse((h, i))) = ready.pop() {
        if height[i as usize] != NO_INSTANCE {
            continue;
        }
        height[i as usize] = h;
        for &p in &needed_by[i as usize] {
            let p = p as usize;
            if height[p] != NO_INSTANCE {
                continue;
            }
            if matches!(g.nodes[p], Node::Union { .. }) {
                ready.push(Reverse((h, p as NodeId)));
            } else {
                // Values finish in rising order, so the last one a container waited for is
                // its deepest.
                waiting[p] -= 1;
                if waiting[p] == 0 {
                    ready.push(Reverse((h + 1, p as NodeId)));
                }
            }
        }
    }
    height
}

/// The distinct nodes of the values an instance of `node` must hold (an object's required
/// properties, an array's first `min` items: the tuple's, then `items` once however many),
/// or a union's alternatives. Heights are maxima and minima, so repeats add nothing, and a
/// `minItems` of billions must not become a list of billions.
fn required_values(node: &Node) -> Vec<NodeId> {
    let mut v: Vec<NodeId> = match node {
        Node::Object { props, .. } => props
            .iter()
            .filter(|p| p.required)
            .map(|p| p.node)
            .collect(),
        Node::Array {
            items, prefix, min, ..
        } => {
            let min = *min as usize;
            let mut v = prefix[..min.min(prefix.len())].to_vec();
            if min > prefix.len() {
                v.push(*items);
            }
            v
        }
        Node::Union { alts } => alts.clone(),
        _ => Vec::new(),
    };
    v.sort_unstable();
    v.dedup();
    v
}

/// Whether a value of height `h` may start as the `level`-th frame of the recognizer's stack
/// (the root's value is level 1): its innermost container must still lie within
/// [`MAX_DEPTH`].
pub fn fits(h: u32, level: usize) -> bool {
    (h as u64) + (level as u64) <= MAX_DEPTH as u64 + 1
}

/// Refuses a root with no finite instance, or none within [`MAX_DEPTH`] containers; the path
/// names where the endless or too-deep chain of required values first comes back or ends.
pub fn check_root(
    g: &Grammar,
    paths: &std::collections::HashMap<NodeId, String>,
) -> Result<(), SchemaError> {
    let h = g.height[g.root as usize];
    if fits(h, 1) {
        return Ok(());
    }
    // Follow required values that lack a (shallow enough) instance down to the first node
    // seen twice (where the loop closes), or the deepest named one.
    let mut seen = vec![false; g.nodes.len()];
    let mut at = g.root;
    let mut path = String::new();
    loop {
        if let Some(p) = paths.get(&at) {
            path.clone_from(p);
        }
        if std::mem::replace(&mut seen[at as usize], true) {
            break;
        }
        // A container is as deep as its deepest required value, a union as its shallowest
        // alternative.
        let values = required_values(&g.nodes[at as usize]).into_iter();
        let next = match g.nodes[at as usize] {
            Node::Union { .. } => values.min_by_key(|&c| g.height[c as usize]),
            _ => values.max_by_key(|&c| g.height[c as usize]),
        };
        match next {
            Some(c) if g.height[c as usize] != 0 => at = c,
            _ => break,
        }
    }
    let why = if h == NO_INSTANCE {
        "no finite value meets the schema: a required value refers back to itself".to_owned()
    } else {
        format!("every value nests {h} containers deep, over the {MAX_DEPTH} allowed")
    };
    Err(SchemaError { path, why })
}
