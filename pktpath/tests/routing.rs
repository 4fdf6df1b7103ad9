//! Routing in the user's terms (#5, item 5), on the host's real kernel:
//! each scenario (tests/common/scenarios.rs) configures a route, a rule or
//! rp_filter on the router, sends real traffic, and checks that the
//! journey's route lookups and its explanation name what it configured.

mod common;

use common::scenarios::{self, Scenario};
use common::{Net, Pktpath};

/// Sets up `scenario` in its own sandbox, traces its UDP and checks it.
fn run_alone(n: u8, scenario: &dyn Scenario) {
    require_root!();
    let net = Net::new(n);
    scenario.setup(&net);
    let p = Pktpath::start(&[&net.only("udp")]);
    scenario.send(&net);
    let all = p.stop();
    scenario.check(&net, &all);
}

#[test]
fn no_route_is_network_unreachable_in_table_main() {
    run_alone(241, &scenarios::NoRoute);
}

#[test]
fn blackhole_route_is_named() {
    run_alone(242, &scenarios::Blackhole);
}

#[test]
fn prohibit_route_is_named() {
    run_alone(243, &scenarios::Prohibit);
}

#[test]
fn rp_filter_drop_names_the_interface_and_the_sysctl() {
    run_alone(244, &scenarios::RpFilter);
}

#[test]
fn policy_routing_names_table_100_and_the_rule() {
    run_alone(245, &scenarios::PolicyRouting);
}
