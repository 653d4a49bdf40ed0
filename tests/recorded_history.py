"""A small history database recorded by a real runner: two steps, one failing 5% of the time."""
from flowchain import ChainBuilder, ChainRegistry, ChainStepError, ComponentRegistry
from flowchain.observe.history import HistoryWriter


def history(tmp_path):
    components = ComponentRegistry()
    components.register("Fast", lambda x: x)

    def slow(x):
        if x % 20 == 0:
            raise ValueError(f"slow step refused {x}")
        return sum(range(2000))

    components.register("Slow", slow)
    reg = ChainRegistry(components, ring_capacity=64)
    cid = reg.register_chain(ChainBuilder("decision").step("fast_step", "Fast", "a", "b", 1)
                             .step("slow_step", "Slow", "b", "c", 0.001).build())
    writer = HistoryWriter(reg, tmp_path / "h.db", sample_rate=0)
    for batch in range(3):
        for x in range(batch * 100, batch * 100 + 100):
            try:
                reg.runner(cid).run(x)
            except ChainStepError:
                pass
        writer.flush()
    writer.close()
    return tmp_path / "h.db"
