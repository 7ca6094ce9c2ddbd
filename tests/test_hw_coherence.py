"""The cache and coherence simulator: pycachesim for single cores, closed-form traces for coherence."""
import numpy as np
import pytest

from qsim.hw import simulate_cache, toml_spec
from qsim.hw.coherence import (COUNTERS, HIT, HIT_STALE, MISS_LLC, UPGRADE, load_multicore,
                               simulate_coherence)

cachesim = pytest.importorskip("cachesim")

GEOMETRIES = [(1024, 64, 2), (4096, 32, 4), (512, 16, 1), (2048, 64, 32), (32768, 64, 8)]


def pycachesim_counts(addresses, size, line, ways):
    l1 = cachesim.Cache("L1", size // (line * ways), ways, line, "LRU")
    memory = cachesim.MainMemory()
    memory.load_to(l1)
    memory.store_from(l1)
    simulator = cachesim.CacheSimulator(l1, memory)
    for a in addresses:
        simulator.load(int(a), length=1)
    return l1.backend.HIT_count, l1.backend.MISS_count


@pytest.mark.parametrize("size,line,ways", GEOMETRIES)
@pytest.mark.parametrize("trace", ["random", "strided", "reuse"])
def test_single_core_hits_and_misses_equal_pycachesim(size, line, ways, trace):
    rng = np.random.default_rng(size + ways)
    if trace == "random":
        addresses = rng.integers(0, 6 * size, 3000)
    elif trace == "strided":  # a stride that maps many lines onto few sets, swept three times
        addresses = np.tile(np.arange(0, 3 * size, line * 3 + 8), 3)[:3000]
    else:  # a hot region that fits and a cold stream that does not
        addresses = np.where(rng.random(3000) < 0.7, rng.integers(0, size // 2, 3000),
                             rng.integers(0, 20 * size, 3000))
    stats = simulate_cache(addresses, size, line, ways)
    assert (stats["hits"], stats["misses"]) == pycachesim_counts(addresses, size, line, ways)


def misses(events):
    return events >= MISS_LLC


def ping_pong(n):
    """Two cores write the same word in turn."""
    return np.arange(n) % 2, np.zeros(n, np.int64), np.ones(n, bool)


def test_ping_pong_writes_every_access_misses_without_obstinacy():
    result = simulate_coherence(*ping_pong(40))
    assert misses(result["events"]).all()
    assert result["counters"]["coherence_miss"].sum() == 40 - 2  # all but each core's first (cold) access


def test_ping_pong_with_q1_never_misses_after_warm_up_and_reads_see_stale_values():
    # Round i: core 0 writes word 0, core 1 writes word 1, core 0 reads word 1, core 1 reads word 0.
    rounds = 25
    cores = np.tile([0, 1, 0, 1], rounds)
    addresses = np.tile([0, 4, 4, 0], rounds)
    writes = np.tile([True, True, False, False], rounds)
    result = simulate_coherence(cores, addresses, writes, obstinate_q=1.0)
    events, staleness = result["events"], result["staleness"]
    assert misses(events[:2]).all() and not misses(events[2:]).any()
    assert (events[4::4] == UPGRADE).all() and (events[5::4] == UPGRADE).all()
    # Core 0 filled the line before core 1's first write, so it misses all i+1 writes of word 1;
    # core 1 filled it after core 0's first write, so it misses the i later writes of word 0.
    i = np.arange(rounds)
    assert (staleness[2::4] == i + 1).all() and (staleness[3::4] == i).all()
    assert (events[2::4] == HIT_STALE).all()
    without = simulate_coherence(cores, addresses, writes)
    assert (without["staleness"] == 0).all() and misses(without["events"][2::4]).all()


def test_false_sharing_misses_like_true_sharing_and_separate_lines_do_not():
    n = 30
    cores = np.arange(n) % 2
    same_line = simulate_coherence(cores, cores * 8, np.ones(n, bool))  # words 0 and 8 of one 64 B line
    assert misses(same_line["events"]).all()
    assert same_line["counters"]["invalidation_sent"].sum() == n - 1
    own_lines = simulate_coherence(cores, cores * 64, np.ones(n, bool))
    assert misses(own_lines["events"]).sum() == 2
    assert own_lines["counters"]["invalidation_sent"].sum() == 0


def test_read_only_shared_array_never_invalidates():
    cores, lines = 4, 64  # 4 KiB, which fits each 32 KiB L1
    addresses = np.tile(np.arange(0, lines * 64, 4), 2)
    trace_cores = np.repeat(np.arange(cores), addresses.size)
    result = simulate_coherence(trace_cores, np.tile(addresses, cores), np.zeros(trace_cores.size, bool))
    counters = result["counters"]
    for name in ("invalidation_sent", "invalidation_received", "coherence_miss", "writeback"):
        assert counters[name].sum() == 0, name
    assert (misses(result["events"]).reshape(cores, -1).sum(axis=1) == lines).all()
    assert (result["staleness"] == 0).all()


def test_write_to_a_stale_line_reaches_the_coherent_copy_and_the_rest_stays_stale():
    # Cores 0 and 1 share the line, then each writes its own word while the other ignores the invalidation.
    trace = [(0, 0, False), (1, 0, False), (1, 4, True), (0, 0, True),
             (0, 4, False), (0, 0, False), (1, 0, False), (1, 4, False), (2, 0, False), (2, 4, False)]
    cores, addresses, writes = map(np.array, zip(*trace))
    result = simulate_coherence(cores, addresses, writes, obstinate_q=1.0)
    events, staleness = result["events"], result["staleness"]
    assert events[3] == UPGRADE  # core 0's write to its stale line broadcasts like any write to S
    assert list(staleness[4:8]) == [1, 0, 1, 0]  # each core sees its own word, not the other's
    assert list(staleness[8:]) == [0, 0] and misses(events[8:9]).all()  # both writes are in the coherent copy


@pytest.mark.parametrize("q,bound", [(0.5, None), (0.7, 3)])
def test_staleness_distribution_is_the_truncated_geometric_law(q, bound):
    # Cores 0 and 2 take turns writing word 0 (each write broadcasts an invalidation); core 1 reads after
    # each write. The reader's copy goes stale with probability q per write and is refilled otherwise
    # (always, once it has ignored `bound` invalidations): a Markov chain m -> m+1 (prob q) or -> 0,
    # whose stationary law is P(m) = q^m (1-q) / (1 - q^(bound+1)) for m = 0..bound (geometric unbounded).
    rounds = 20000
    cores = np.tile([0, 1, 2, 1], rounds // 2)
    writes = np.tile([True, False, True, False], rounds // 2)
    result = simulate_coherence(cores, np.zeros(cores.size, np.int64), writes, obstinate_q=q,
                                max_ignored=bound, seed=3)
    seen = result["staleness"][~writes][100:]  # past warm-up
    top = 12 if bound is None else bound
    expected = (1 - q) * q ** np.arange(top + 1)
    if bound is not None:
        expected /= 1 - q ** (bound + 1)
        assert seen.max() == bound
    observed = np.bincount(seen, minlength=top + 1)[:top + 1] / seen.size
    stderr = np.sqrt(expected * (1 - expected) / seen.size) * 3  # reads are correlated in runs: widen
    assert np.all(np.abs(observed - expected) < 5 * stderr + 1e-3)


def test_cycle_staleness_bound_refetches_old_stale_lines():
    cores, addresses, writes = np.tile([0, 1], 50), np.zeros(100, np.int64), np.tile([True, False], 50)
    unbounded = simulate_coherence(cores, addresses, writes, obstinate_q=1.0)
    assert unbounded["staleness"][1::2].max() == 49  # q = 1: the reader never refreshes
    bounded = simulate_coherence(cores, addresses, writes, obstinate_q=1.0, max_stale_cycles=5)
    assert bounded["staleness"][1::2].max() <= 5
    assert bounded["counters"]["stale_refetch"].sum() > 0


def test_counters_are_per_core_and_events_add_up():
    rng = np.random.default_rng(0)
    n = 5000
    result = simulate_coherence(rng.integers(0, 4, n), rng.integers(0, 4096, n), rng.random(n) < 0.3,
                                obstinate_q=0.3)
    counters = result["counters"]
    assert set(counters) == set(COUNTERS)
    total_events = sum(counters[e].sum() for e in ("hit", "hit_stale", "upgrade", "miss_llc", "miss_dram",
                                                   "miss_remote"))
    assert total_events == n
    assert counters["invalidation_ignored"].sum() <= counters["invalidation_received"].sum()
    assert (np.bincount(result["events"], minlength=6)[HIT] == counters["hit"].sum())


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="not a multiple of line_bytes x ways"):
        simulate_cache([0], 1000, 64, 2)
    with pytest.raises(ValueError, match="ways must be a positive integer"):
        simulate_cache([0], 1024, 64, 0)
    with pytest.raises(ValueError, match="non-negative byte addresses"):
        simulate_cache([-64], 1024, 64, 2)
    for q in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"obstinate_q must be a probability in \[0, 1\]"):
            simulate_coherence([0], [0], [True], obstinate_q=q)
    with pytest.raises(ValueError, match="max_ignored"):
        simulate_coherence([0], [0], [True], max_ignored=-1)
    with pytest.raises(ValueError, match="equally long"):
        simulate_coherence([0, 1], [0], [True])
    with pytest.raises(ValueError, match="cores=65: .* at most 64"):
        simulate_coherence([64], [0], [True])


def test_multicore_description_loads_with_its_assumptions(tmp_path):
    spec = load_multicore("multicore_16")
    assert spec.cores == 16 and spec.l1.size_bytes == 32768
    assert any("remote_cycles" in a for a in spec.assumptions)
    energy = spec.event_energy_pj()
    assert energy["hit"] < energy["miss_llc"] < energy["miss_dram"]
    assert load_multicore("multicore_16", cores=4).cores == 4
    bad = tmp_path / "bad.toml"
    packaged = toml_spec._packaged_dir() / "multicore_16.toml"
    bad.write_text(packaged.read_text().replace("ways = 8", "ways = 7"))
    with pytest.raises(ValueError, match="l1.size_bytes=32768 is not a multiple"):
        load_multicore(bad)


def test_a_write_invalidates_every_one_of_64_sharers_and_each_rereads_with_a_coherence_miss():
    # All 64 cores (the most the snoop filter's bit set holds) read one word, core 0 writes it, all reread.
    cores = np.concatenate([np.arange(64), [0], np.arange(1, 64)])
    writes = np.zeros(cores.size, bool)
    writes[64] = True
    result = simulate_coherence(cores, np.zeros(cores.size, np.int64), writes)
    counters = result["counters"]
    assert counters["invalidation_received"].sum() == 63 and counters["invalidation_received"][63] == 1
    assert counters["coherence_miss"].sum() == 63 and result["events"][64] == UPGRADE
