use pktpath::kernel::{btf::Inventory, tracepoint::*};
fn main() -> anyhow::Result<()> {
    let inv = Inventory::load()?;
    let f = pktpath::filter::Filter::new(&std::env::args().nth(1).unwrap_or_default())?;
    let t = Tracer::start(&inv, &f, &Selection::default(), None, 1 << 22)?;
    println!("{} attached {} failed {:?}", t.flavour.name(), t.attached(), t.failed);
    std::thread::sleep(std::time::Duration::from_secs(3));
    println!("{:?}", t.counters()?);
    Ok(())
}
