//! The engines the reconciler can act through, by placement (host, engine kind).
//!
//! Every machine record names its placement; the reconciler looks the engine up here and never
//! assumes there is only one. Today the registry holds one entry (the container engine of the
//! local host); the microVM engine and further hosts are entries, not special cases.

use flvpc_host::Engine;
use flvpc_model::Placement;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Placement → engine handle. Cheap to clone (handles are shared).
#[derive(Clone, Default)]
pub struct Engines {
    by_placement: BTreeMap<Placement, Arc<dyn Engine>>,
}

impl Engines {
    /// No engine yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The registry with `engine` acting for the machines placed at `placement` (replacing any
    /// engine registered there before).
    pub fn with(mut self, placement: Placement, engine: Arc<dyn Engine>) -> Self {
        self.by_placement.insert(placement, engine);
        self
    }

    /// The engine of `placement`, if one is registered.
    pub fn get(&self, placement: &Placement) -> Option<&Arc<dyn Engine>> {
        self.by_placement.get(placement)
    }

    /// Every registered engine with its placement, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = (&Placement, &Arc<dyn Engine>)> {
        self.by_placement.iter()
    }

    /// Why a machine placed at `placement` cannot be acted on: there is no such engine here.
    pub fn missing(&self, placement: &Placement) -> String {
        let known: Vec<String> = self.by_placement.keys().map(Placement::to_string).collect();
        let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
        format!(
            "no {} engine on host {} (this server has: {known}); the machine is left as it is until that engine \
             is available",
            placement.engine, placement.host
        )
    }
}

impl fmt::Debug for Engines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_placement.keys()).finish()
    }
}
