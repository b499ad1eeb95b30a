//! Flow-level network: transfers share directed links max-min fairly.
//!
//! Rates come from progressive filling: repeatedly take the link whose remaining capacity per
//! unfrozen flow is smallest, give its flows that share, freeze them, and charge their routes.
//! A change (a flow starting or draining) re-solves only the flows connected to it through
//! shared links, and all changes at one timestamp are settled together. Drain events are
//! planned from the current rates and invalidated lazily (by generation) when a rate changes.
//! A flow's bytes take `bytes / rate`; its data arrives one route latency after it drains.
//!
//! A flow may also be a weighted class ([`FlowNet::start_class`]): one flow standing for many
//! that are identical up to a symmetry of the fabric, or for a whole collective. It loads each
//! link of its route with its own weight per unit of rate, and its rate may be capped (a
//! collective cannot run faster than it does alone). Progressive filling then freezes a class
//! where the weighted load of a link reaches its capacity, or where the class reaches its cap.

use crate::engine::Sim;

/// Index of a directed link.
pub type LinkId = u32;

#[derive(Debug, Clone)]
struct Flow {
    route: Vec<LinkId>,
    /// Position of this flow in `on_link[route[i]]`, for O(1) removal.
    slot: Vec<u32>,
    /// Load per unit of rate on each hop; empty: 1 on every hop.
    weight: Vec<f64>,
    /// Highest rate the flow may have (infinite for a plain transfer).
    cap: f64,
    remaining: f64,
    /// Bytes per picosecond.
    rate: f64,
    updated: u64,
    latency: u64,
    tag: u32,
    live: bool,
}

impl Flow {
    fn weight(&self, hop: usize) -> f64 {
        self.weight.get(hop).copied().unwrap_or(1.0)
    }
}

/// Progressive filling's state over one component's links and flows.
struct Fill<'a> {
    /// A link's index in `links`.
    slot: &'a [u32],
    links: Vec<u32>,
    residual: Vec<f64>,
    /// Weighted load per unit rate of the unfrozen flows on each link, and how many they are.
    count: Vec<f64>,
    users: Vec<u32>,
    rate: Vec<f64>,
    frozen: Vec<bool>,
    left: usize,
}

impl Fill<'_> {
    fn idx(&self, l: u32) -> usize {
        let i = self.slot[l as usize] as usize;
        debug_assert_eq!(self.links[i], l, "link of the component");
        i
    }
    /// Fixes flow `p` (`f`) at `rate` and charges its route.
    fn freeze(&mut self, f: &Flow, p: usize, rate: f64) {
        self.frozen[p] = true;
        self.rate[p] = rate;
        self.left -= 1;
        for (i, &l) in f.route.iter().enumerate() {
            let j = self.idx(l);
            let w = f.weight(i);
            self.residual[j] = (self.residual[j] - rate * w).max(0.0);
            self.users[j] -= 1;
            self.count[j] = if self.users[j] == 0 {
                0.0
            } else {
                (self.count[j] - w).max(0.0)
            };
        }
    }
}

/// A finished transfer: its tag and the time its last byte arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub tag: u32,
    pub at: u64,
}

/// Links, active flows and their fair rates.
pub struct FlowNet {
    /// Capacity in bytes per picosecond.
    cap: Vec<f64>,
    latency: Vec<u64>,
    /// Active flows on each link, with the hop at which the link is on the flow's route.
    on_link: Vec<Vec<(u32, u32)>>,
    flows: Vec<Flow>,
    free: Vec<u32>,
    /// Flows and links whose rates must be re-solved at the next settle.
    dirty: Vec<u32>,
    dirty_links: Vec<u32>,
    sim: Sim<u32>,
    /// Total bytes carried by each link so far.
    pub carried: Vec<f64>,
    pub solves: u64,
    /// Scratch for settling: the solve a flow or link was last seen in, and a link's index in
    /// that solve's list.
    flow_seen: Vec<u32>,
    link_seen: Vec<u32>,
    link_slot: Vec<u32>,
    /// Load of each link at the current rates, bytes per picosecond (exact after each solve on
    /// the links it touched).
    load: Vec<f64>,
}

/// Below this share of its capacity a link counts as not saturated.
const SATURATED: f64 = 1.0 - 1e-9;

impl FlowNet {
    /// `capacity` in bytes/s and `latency` in ps, per link.
    pub fn new(capacity: &[f64], latency: &[u64]) -> Self {
        assert_eq!(capacity.len(), latency.len());
        assert!(
            capacity.iter().all(|&c| c > 0.0),
            "every link needs a positive capacity"
        );
        FlowNet {
            cap: capacity.iter().map(|c| c / 1e12).collect(),
            latency: latency.to_vec(),
            on_link: vec![Vec::new(); capacity.len()],
            flows: Vec::new(),
            free: Vec::new(),
            dirty: Vec::new(),
            dirty_links: Vec::new(),
            sim: Sim::new(0),
            carried: vec![0.0; capacity.len()],
            solves: 0,
            flow_seen: Vec::new(),
            link_seen: vec![0; capacity.len()],
            link_slot: vec![0; capacity.len()],
            load: vec![0.0; capacity.len()],
        }
    }

    pub fn now(&self) -> u64 {
        self.sim.now()
    }

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.sim.processed()
    }

    /// Whether a drain was scheduled past the engine's horizon.
    pub fn beyond_horizon(&self) -> bool {
        self.sim.beyond_horizon()
    }

    /// Starts a transfer of `bytes` over `route` now. An empty route (a GPU to itself) is a
    /// transfer of zero time.
    pub fn start(&mut self, route: Vec<LinkId>, bytes: f64, tag: u32) {
        self.start_flow(route, Vec::new(), f64::INFINITY, bytes, tag);
    }

    /// Starts a weighted class of `amount` units over `route`: at rate `r` (units per second)
    /// it loads link `route[i]` with `weight[i] · r` bytes/s, and `r` never exceeds `cap`.
    pub fn start_class(
        &mut self,
        route: Vec<LinkId>,
        weight: Vec<f64>,
        cap: f64,
        amount: f64,
        tag: u32,
    ) {
        assert_eq!(route.len(), weight.len(), "one weight per hop");
        assert!(
            weight.iter().all(|&w| w > 0.0 && w.is_finite()) && cap > 0.0,
            "positive weights and cap"
        );
        self.start_flow(route, weight, cap / 1e12, amount, tag);
    }

    fn start_flow(&mut self, route: Vec<LinkId>, weight: Vec<f64>, cap: f64, bytes: f64, tag: u32) {
        // A class sprayed over paths takes their average latency: each hop by its share.
        let latency = route
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                let lat = self.latency[l as usize];
                match weight.get(i) {
                    Some(&w) if w < 1.0 => (lat as f64 * w).round() as u64,
                    _ => lat,
                }
            })
            .sum();
        let f = Flow {
            slot: vec![0; route.len()],
            weight,
            cap,
            route,
            remaining: bytes.max(0.0),
            rate: 0.0,
            updated: self.sim.now(),
            latency,
            tag,
            live: true,
        };
        let id = match self.free.pop() {
            Some(i) => {
                self.flows[i as usize] = f;
                i
            }
            None => {
                self.flows.push(f);
                self.sim.grow(self.flows.len());
                (self.flows.len() - 1) as u32
            }
        };
        for hop in 0..self.flows[id as usize].route.len() {
            let l = self.flows[id as usize].route[hop] as usize;
            self.flows[id as usize].slot[hop] = self.on_link[l].len() as u32;
            self.on_link[l].push((id, hop as u32));
        }
        // A capped class whose links stay unsaturated at its cap takes its cap and changes no
        // other rate (no flow is held by those links): no solve. Only when nothing else waits
        // to be solved, so that the loads are those of the current rates.
        let fl = &self.flows[id as usize];
        let settled = self.dirty.is_empty() && self.dirty_links.is_empty();
        let fits = fl.cap.is_finite()
            && fl.remaining > 0.0
            && fl.route.iter().enumerate().all(|(i, &l)| {
                self.load[l as usize] + fl.cap * fl.weight(i) <= self.cap[l as usize] * SATURATED
            });
        if settled && fits {
            let cap = fl.cap;
            let drain = self.sim.later_f(fl.remaining / cap);
            for i in 0..self.flows[id as usize].route.len() {
                let l = self.flows[id as usize].route[i] as usize;
                self.load[l] += cap * self.flows[id as usize].weight(i);
            }
            self.flows[id as usize].rate = cap;
            self.sim.schedule(drain, id, id);
            return;
        }
        self.dirty.push(id);
    }

    /// Progress every flow in `ids` to now at its current rate.
    fn advance(&mut self, id: u32) {
        let now = self.sim.now();
        let f = &mut self.flows[id as usize];
        let moved = (f.rate * (now - f.updated) as f64).min(f.remaining);
        f.remaining -= moved;
        f.updated = now;
        for (i, &l) in f.route.iter().enumerate() {
            self.carried[l as usize] += moved * f.weight(i);
        }
    }

    /// Re-solves the rates of every flow connected to a changed one, and re-plans their drains.
    fn settle(&mut self) {
        if self.dirty.is_empty() && self.dirty_links.is_empty() {
            return;
        }
        self.solves += 1;
        let epoch = (self.solves & 0xffff_ffff) as u32;
        if epoch == 0 {
            self.flow_seen.fill(u32::MAX);
            self.link_seen.fill(u32::MAX);
        }
        self.flow_seen.resize(self.flows.len(), u32::MAX);
        // The component: flows reachable from the changed ones through shared links.
        let mut comp = Vec::new();
        let mut links = Vec::new();
        let mut stack: Vec<u32> = std::mem::take(&mut self.dirty);
        for l in std::mem::take(&mut self.dirty_links) {
            if self.link_seen[l as usize] != epoch {
                self.link_seen[l as usize] = epoch;
                links.push(l);
                stack.extend(self.on_link[l as usize].iter().map(|&(f, _)| f));
            }
        }
        while let Some(f) = stack.pop() {
            if self.flow_seen[f as usize] == epoch || !self.flows[f as usize].live {
                continue;
            }
            self.flow_seen[f as usize] = epoch;
            comp.push(f);
            for &l in &self.flows[f as usize].route {
                if self.link_seen[l as usize] != epoch {
                    self.link_seen[l as usize] = epoch;
                    links.push(l);
                    stack.extend(self.on_link[l as usize].iter().map(|&(f, _)| f));
                }
            }
        }
        // Only the links some flow of the component crosses (a drained flow's links may have
        // none left), in order.
        links.retain(|&l| !self.on_link[l as usize].is_empty());
        links.sort_unstable();
        for (i, &l) in links.iter().enumerate() {
            self.link_slot[l as usize] = i as u32;
        }
        comp.sort_unstable();
        for &f in &comp {
            self.advance(f);
        }
        let rates = self.max_min(&comp, links.clone());
        let now = self.sim.now();
        for (&f, rate) in comp.iter().zip(rates) {
            let fl = &mut self.flows[f as usize];
            if fl.rate == rate && fl.remaining > 0.0 {
                // Same rate: its planned drain still holds.
                continue;
            }
            fl.rate = rate;
            self.sim.cancel(f);
            let drain = if fl.remaining <= 0.0 {
                now
            } else if rate > 0.0 {
                self.sim.later_f(fl.remaining / rate)
            } else {
                u64::MAX
            };
            if drain != u64::MAX {
                self.sim.schedule(drain, f, f);
            }
        }
        for l in links {
            self.load[l as usize] = self.on_link[l as usize]
                .iter()
                .map(|&(f, hop)| {
                    let fl = &self.flows[f as usize];
                    fl.rate * fl.weight(hop as usize)
                })
                .sum();
        }
    }

    /// Max-min fair rates for `comp` by progressive filling (ties broken by link index, then
    /// caps by flow index): weighted loads, capped rates.
    fn max_min(&self, comp: &[u32], links: Vec<u32>) -> Vec<f64> {
        let mut fill = Fill {
            slot: &self.link_slot,
            residual: links.iter().map(|&l| self.cap[l as usize]).collect(),
            count: vec![0.0; links.len()],
            users: vec![0; links.len()],
            rate: vec![f64::INFINITY; comp.len()],
            frozen: vec![false; comp.len()],
            left: comp.len(),
            links,
        };
        for &f in comp {
            let fl = &self.flows[f as usize];
            for (i, &l) in fl.route.iter().enumerate() {
                let j = fill.idx(l);
                fill.count[j] += fl.weight(i);
                fill.users[j] += 1;
            }
        }
        // Capped flows, smallest cap first.
        let mut capped: Vec<usize> = (0..comp.len())
            .filter(|&i| self.flows[comp[i] as usize].cap.is_finite())
            .collect();
        capped.sort_by(|&a, &b| {
            let (x, y) = (
                self.flows[comp[a] as usize].cap,
                self.flows[comp[b] as usize].cap,
            );
            x.total_cmp(&y).then(a.cmp(&b))
        });
        let mut next_cap = 0;
        // Flows with an empty route are limited only by their cap.
        for (i, &f) in comp.iter().enumerate() {
            if self.flows[f as usize].route.is_empty() {
                fill.frozen[i] = true;
                fill.rate[i] = self.flows[f as usize].cap;
                fill.left -= 1;
            }
        }
        while fill.left > 0 {
            let mut best = (f64::INFINITY, usize::MAX);
            for (i, &c) in fill.count.iter().enumerate() {
                if fill.users[i] > 0 {
                    let share = fill.residual[i] / c;
                    if share < best.0 {
                        best = (share, i);
                    }
                }
            }
            // Every capped flow whose cap is below the tightest link's share stops at its cap:
            // freezing one only raises the others' shares, so they all go in one pass.
            let mut froze = false;
            while let Some(&p) = capped.get(next_cap) {
                let cap = self.flows[comp[p] as usize].cap;
                if !fill.frozen[p] {
                    if cap > best.0 {
                        break;
                    }
                    fill.freeze(&self.flows[comp[p] as usize], p, cap);
                    froze = true;
                }
                next_cap += 1;
            }
            if froze {
                continue;
            }
            let (share, bottleneck) = best;
            assert!(bottleneck != usize::MAX, "unfrozen flows without links");
            let l = fill.links[bottleneck];
            for &(f, _) in &self.on_link[l as usize] {
                if !self.flows[f as usize].live {
                    continue;
                }
                let Ok(p) = comp.binary_search(&f) else {
                    continue;
                };
                if !fill.frozen[p] {
                    fill.freeze(&self.flows[f as usize], p, share);
                }
            }
        }
        fill.rate
    }

    /// When the next flow drains at the current rates (after settling them); `None` when none
    /// is active. For a caller that runs its own clock beside the network's.
    pub fn next_drain(&mut self) -> Option<u64> {
        self.settle();
        self.sim.peek_time()
    }

    /// Runs until the next transfer drains; returns its arrival (drain time plus route latency).
    /// `None` when no flow is active.
    pub fn next_arrival(&mut self) -> Option<Arrival> {
        // Rates are re-solved once per timestamp: drains due now are taken first.
        loop {
            let dirty = !self.dirty.is_empty() || !self.dirty_links.is_empty();
            match self.sim.peek_time() {
                Some(t) if t == self.sim.now() || !dirty => break,
                _ if dirty => self.settle(),
                _ => return None,
            }
        }
        let (_, f) = self.sim.pop()?;
        self.advance(f);
        let fl = &mut self.flows[f as usize];
        fl.live = false;
        fl.remaining = 0.0;
        let arrival = Arrival {
            tag: fl.tag,
            at: self.sim.now().saturating_add(fl.latency),
        };
        let route = std::mem::take(&mut fl.route);
        let slots = std::mem::take(&mut fl.slot);
        let weight = std::mem::take(&mut fl.weight);
        let rate = fl.rate;
        for (hop, (&l, &p)) in route.iter().zip(&slots).enumerate() {
            let v = &mut self.on_link[l as usize];
            v.swap_remove(p as usize);
            if let Some(&(moved, hop)) = v.get(p as usize) {
                self.flows[moved as usize].slot[hop as usize] = p;
            }
            // A link that was not saturated held no flow: freeing it changes no rate.
            let before = self.load[l as usize];
            self.load[l as usize] =
                (before - rate * weight.get(hop).copied().unwrap_or(1.0)).max(0.0);
            if before > self.cap[l as usize] * SATURATED {
                self.dirty_links.push(l);
            }
        }
        self.free.push(f);
        Some(arrival)
    }

    /// Moves the clock forward to `t` (no flow may drain before then).
    pub fn advance_to(&mut self, t: u64) {
        self.settle();
        self.sim.advance_clock(t);
    }

    /// Current rate of every active flow, by tag, bytes/s.
    pub fn rates(&mut self) -> Vec<(u32, f64)> {
        self.settle();
        self.flows
            .iter()
            .filter(|f| f.live)
            .map(|f| (f.tag, f.rate * 1e12))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run_all(n: &mut FlowNet) -> Vec<Arrival> {
        let mut v = Vec::new();
        while let Some(a) = n.next_arrival() {
            v.push(a);
        }
        v
    }

    #[test]
    fn one_flow_takes_latency_plus_size_over_bandwidth() {
        // Two links of 50 GB/s and 100 GB/s, 1 µs latency each: 1 GB takes 2 µs + 20 ms.
        let mut n = FlowNet::new(&[50e9, 100e9], &[1_000_000, 1_000_000]);
        n.start(vec![0, 1], 1e9, 7);
        let a = run_all(&mut n);
        assert_eq!(
            a,
            vec![Arrival {
                tag: 7,
                at: 20_000_000_000 + 2_000_000
            }]
        );
    }

    #[test]
    fn n_flows_on_one_link_share_it() {
        let mut n = FlowNet::new(&[40e9], &[0]);
        for t in 0..4 {
            n.start(vec![0], 1e9, t);
        }
        for (_, r) in n.rates() {
            assert!((r - 10e9).abs() < 1.0);
        }
        let a = run_all(&mut n);
        assert!(a.iter().all(|x| x.at == 100_000_000_000), "{a:?}");
    }

    #[test]
    fn a_finished_flow_frees_bandwidth_for_the_rest() {
        // 1 GB and 3 GB on a 10 GB/s link: both at 5 until t = 0.2 s, then the big one at 10.
        let mut n = FlowNet::new(&[10e9], &[0]);
        n.start(vec![0], 1e9, 1);
        n.start(vec![0], 3e9, 2);
        let a = run_all(&mut n);
        assert_eq!(
            a[0],
            Arrival {
                tag: 1,
                at: 200_000_000_000
            }
        );
        assert_eq!(
            a[1],
            Arrival {
                tag: 2,
                at: 400_000_000_000
            }
        );
    }

    #[test]
    fn max_min_gives_the_unconstrained_flow_the_leftover() {
        // Link 0 (10) shared by A and B; B also crosses link 1 (2): B gets 2, A gets 8.
        let mut n = FlowNet::new(&[10e9, 2e9], &[0, 0]);
        n.start(vec![0], 1e9, 0);
        n.start(vec![0, 1], 1e9, 1);
        let r = n.rates();
        assert!(
            (r[0].1 - 8e9).abs() < 1.0 && (r[1].1 - 2e9).abs() < 1.0,
            "{r:?}"
        );
    }

    /// A class loads each link by its weight: sprayed evenly over two 10 GB/s paths behind one
    /// 15 GB/s link, a flow runs at 15 (half of it, 7.5, on each path); two such flows share the
    /// 15; a cap below that holds a class at its cap and leaves the rest to the other.
    #[test]
    fn weighted_classes_load_links_by_their_weights() {
        let mut n = FlowNet::new(&[15e9, 10e9, 10e9], &[0, 0, 0]);
        n.start_class(vec![0, 1, 2], vec![1.0, 0.5, 0.5], f64::INFINITY, 1e9, 0);
        let r = n.rates();
        assert!((r[0].1 - 15e9).abs() < 1.0, "{r:?}");
        n.start_class(vec![0, 1, 2], vec![1.0, 0.5, 0.5], f64::INFINITY, 1e9, 1);
        let r = n.rates();
        assert!(r.iter().all(|x| (x.1 - 7.5e9).abs() < 1.0), "{r:?}");
        let mut n = FlowNet::new(&[15e9, 10e9, 10e9], &[0, 0, 0]);
        n.start_class(vec![0, 1, 2], vec![1.0, 0.5, 0.5], 4e9, 1e9, 0);
        n.start(vec![0], 1e9, 1);
        let mut r = n.rates();
        r.sort_by_key(|x| x.0);
        assert!(
            (r[0].1 - 4e9).abs() < 1.0 && (r[1].1 - 11e9).abs() < 1.0,
            "{r:?}"
        );
        // Three paths of 10 with 1/3 each behind a 100 link: 30, the paths' sum.
        let mut n = FlowNet::new(&[100e9, 10e9, 10e9, 10e9], &[0; 4]);
        let third = 1.0 / 3.0;
        n.start_class(
            vec![0, 1, 2, 3],
            vec![1.0, third, third, third],
            f64::INFINITY,
            1e9,
            0,
        );
        let r = n.rates();
        assert!((r[0].1 - 30e9).abs() < 1e3, "{r:?}");
    }

    /// A capped class that fits on unsaturated links takes its cap without a solve, and its
    /// end frees them without one; one that would saturate a link is solved with the rest.
    #[test]
    fn classes_that_fit_skip_the_solve() {
        let mut n = FlowNet::new(&[10e9, 10e9], &[0, 0]);
        n.start_class(vec![0], vec![1.0], 4e9, 4e9, 0);
        n.start_class(vec![0, 1], vec![1.0, 1.0], 4e9, 8e9, 1);
        assert_eq!(n.solves, 0);
        let r = n.rates();
        assert!(r.iter().all(|x| (x.1 - 4e9).abs() < 1.0), "{r:?}");
        // A third at 4 would put 12 on link 0: solved, all three at 10/3 there.
        n.start_class(vec![0], vec![1.0], 4e9, 1e9, 2);
        let r = n.rates();
        assert_eq!(n.solves, 1);
        assert!(r.iter().all(|x| (x.1 - 10e9 / 3.0).abs() < 1.0), "{r:?}");
        // Draining the small one leaves link 0 saturated by the other two (4 each, 8 of 10):
        // the next drain frees a saturated link and is solved.
        let first = n.next_arrival().unwrap();
        assert_eq!(first.tag, 2);
        let r = n.rates();
        assert!(r.iter().all(|x| (x.1 - 4e9).abs() < 1.0), "{r:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Weighted, capped classes: no link carries more than its capacity; every class runs
        /// at its cap or is held by a saturated link on which no other class runs faster; the
        /// order classes start in does not matter.
        #[test]
        fn weighted_max_min_properties(
            caps in prop::collection::vec(1u32..100, 2..6),
            flows in prop::collection::vec(
                (prop::collection::vec((0usize..6, 1u32..8), 1..4), 1u32..200, any::<bool>()),
                1..10,
            ),
        ) {
            let caps: Vec<f64> = caps.iter().map(|&c| c as f64 * 1e9).collect();
            let nl = caps.len();
            let classes: Vec<(Vec<u32>, Vec<f64>, f64)> = flows.iter().map(|(hops, cap, capped)| {
                let mut seen = std::collections::BTreeMap::new();
                for &(l, w) in hops {
                    seen.entry((l % nl) as u32).or_insert(w as f64 / 4.0);
                }
                let (r, w): (Vec<u32>, Vec<f64>) = seen.into_iter().unzip();
                (r, w, if *capped { *cap as f64 * 1e8 } else { f64::INFINITY })
            }).collect();
            let solve = |order: &[usize]| {
                let mut n = FlowNet::new(&caps, &vec![0; nl]);
                for &i in order {
                    let (r, w, c) = &classes[i];
                    n.start_class(r.clone(), w.clone(), *c, 1e9, i as u32);
                }
                let mut r = n.rates();
                r.sort_by_key(|x| x.0);
                r
            };
            let fwd: Vec<usize> = (0..classes.len()).collect();
            let rev: Vec<usize> = fwd.iter().rev().copied().collect();
            let (a, b) = (solve(&fwd), solve(&rev));
            for (x, y) in a.iter().zip(&b) {
                prop_assert!((x.1 - y.1).abs() <= 1e-6 * x.1.max(1.0), "order matters: {:?} vs {:?}", a, b);
            }
            let mut load = vec![0.0; nl];
            for (i, (_, r)) in a.iter().enumerate() {
                for (&l, &w) in classes[i].0.iter().zip(&classes[i].1) {
                    load[l as usize] += r * w;
                }
            }
            for l in 0..nl {
                prop_assert!(load[l] <= caps[l] * (1.0 + 1e-9), "link {} over capacity", l);
            }
            for (i, (_, r)) in a.iter().enumerate() {
                let (route, _, cap) = &classes[i];
                let at_cap = (r - cap).abs() <= 1e-9 * cap.max(1.0);
                let held = route.iter().any(|&l| {
                    load[l as usize] >= caps[l as usize] * (1.0 - 1e-9)
                        && classes.iter().enumerate()
                            .filter(|(_, c)| c.0.contains(&l))
                            .all(|(j, _)| a[j].1 <= r * (1.0 + 1e-9))
                });
                prop_assert!(at_cap || held, "class {} at {} is neither capped nor held", i, r);
                prop_assert!(*r <= cap * (1.0 + 1e-9));
            }
        }

        /// No link exceeds its capacity; every flow is bottlenecked on some saturated link where
        /// it has the largest rate; the result does not depend on the order flows arrive in;
        /// bytes are conserved.
        #[test]
        fn max_min_properties(
            caps in prop::collection::vec(1u32..100, 2..8),
            flows in prop::collection::vec((prop::collection::vec(0usize..8, 1..4), 1u32..1000), 1..12),
        ) {
            let caps: Vec<f64> = caps.iter().map(|&c| c as f64 * 1e9).collect();
            let nl = caps.len();
            let routes: Vec<Vec<u32>> = flows.iter().map(|(r, _)| {
                let mut r: Vec<u32> = r.iter().map(|&l| (l % nl) as u32).collect();
                r.sort_unstable();
                r.dedup();
                r
            }).collect();
            let solve = |order: &[usize]| {
                let mut n = FlowNet::new(&caps, &vec![0; nl]);
                for &i in order {
                    n.start(routes[i].clone(), flows[i].1 as f64 * 1e6, i as u32);
                }
                let mut r = n.rates();
                r.sort_by_key(|x| x.0);
                r
            };
            let fwd: Vec<usize> = (0..flows.len()).collect();
            let rev: Vec<usize> = fwd.iter().rev().copied().collect();
            let a = solve(&fwd);
            let b = solve(&rev);
            for (x, y) in a.iter().zip(&b) {
                prop_assert!((x.1 - y.1).abs() <= 1e-6 * x.1.max(1.0), "order matters: {:?} vs {:?}", a, b);
            }
            let mut load = vec![0.0; nl];
            for (i, (_, r)) in a.iter().enumerate() {
                for &l in &routes[i] { load[l as usize] += r; }
            }
            for l in 0..nl {
                prop_assert!(load[l] <= caps[l] * (1.0 + 1e-9), "link {} over capacity", l);
            }
            for (i, (_, r)) in a.iter().enumerate() {
                let bottleneck = routes[i].iter().any(|&l| {
                    let saturated = load[l as usize] >= caps[l as usize] * (1.0 - 1e-9);
                    let largest = routes.iter().enumerate()
                        .filter(|(_, rt)| rt.contains(&l))
                        .all(|(j, _)| a[j].1 <= r * (1.0 + 1e-9));
                    saturated && largest
                });
                prop_assert!(bottleneck, "flow {} has no bottleneck link", i);
            }
            // Bytes are conserved: every link carries exactly the bytes of the flows crossing it.
            let mut n = FlowNet::new(&caps, &vec![0; nl]);
            for i in 0..flows.len() {
                n.start(routes[i].clone(), flows[i].1 as f64 * 1e6, i as u32);
            }
            while n.next_arrival().is_some() {}
            for l in 0..nl {
                let want: f64 = (0..flows.len()).filter(|&i| routes[i].contains(&(l as u32))).map(|i| flows[i].1 as f64 * 1e6).sum();
                prop_assert!((n.carried[l] - want).abs() <= 1e-6 * want.max(1.0), "link {} carried {} of {}", l, n.carried[l], want);
            }
        }
    }
}
