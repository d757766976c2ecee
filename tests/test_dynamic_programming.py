"""The chain dynamic programme: the scan in depth log T (for GPUs) equals the sequential forward
algorithm and Viterbi on random sizes and table shapes; the sequential loops run on one thread."""

import pytest
import torch

from ebm_cli.dynamic_programming import forward_free_energy, sequence_energy, use_scan, viterbi
from ebm_cli.runtime.threads import one_thread


def tables(gen, b, t, s):
    """p shared, per sequence, and per sequence and step."""
    return [torch.randn(s, s, generator=gen), torch.randn(b, s, s, generator=gen),
            torch.randn(b, max(t - 1, 0), s, s, generator=gen)]


@pytest.mark.parametrize("seed", range(6))
def test_the_scan_equals_the_sequential_forward_algorithm_and_viterbi(seed):
    gen = torch.Generator().manual_seed(seed)
    b, t, s = int(torch.randint(1, 7, (1,), generator=gen)), int(torch.randint(1, 40, (1,), generator=gen)), \
        int(torch.randint(1, 10, (1,), generator=gen))
    u = 2 * torch.randn(b, t, s, generator=gen)
    for p in tables(gen, b, t, s):
        for beta in (0.3, 1.0, 4.0):
            seq, scan = forward_free_energy(u, p, beta, "sequential"), forward_free_energy(u, p, beta, "scan")
            assert torch.allclose(scan, seq, rtol=1e-5, atol=1e-6), (b, t, s, tuple(p.shape), beta)
        (e_seq, y_seq), (e_scan, y_scan) = viterbi(u, p, "sequential"), viterbi(u, p, "scan")
        assert torch.allclose(e_scan, e_seq, rtol=1e-5, atol=1e-5)
        assert torch.equal(y_scan, y_seq), (b, t, s, tuple(p.shape))


def test_the_scan_handles_group_tables_hard_constraints_and_gradients():
    gen = torch.Generator().manual_seed(7)
    u = torch.randn(3, 4, 33, 6, generator=gen)  # (G, B, T, S): a chain's modes
    p = torch.randn(3, 6, 6, generator=gen)
    p[:, 0, 1:] = 1e9  # state 0 may only stay
    u1, u2 = u.clone().requires_grad_(), u.clone().requires_grad_()
    seq, scan = forward_free_energy(u1, p, 1.0, "sequential"), forward_free_energy(u2, p, 1.0, "scan")
    assert torch.allclose(scan, seq, rtol=1e-5)
    seq.sum().backward()
    scan.sum().backward()
    assert torch.allclose(u2.grad, u1.grad, atol=1e-5)  # the marginals: a training step may take either


def test_both_forms_are_exact_where_the_arriving_mass_differs_by_far_and_paths_match_their_energies():
    """A state 100 nats below its step's best still carries the most mass (log Z = 100 by brute force);
    with ties, each form's path has the energy it reports."""
    u, p = torch.tensor([[[0.0, 100.0], [0.0, 1000.0]]]), torch.tensor([[150.0, 0.0], [0.0, 0.0]])
    for method in ("sequential", "scan"):
        assert forward_free_energy(u, p, 1.0, method).item() == pytest.approx(100.0, abs=1e-4)
    u, p = torch.zeros(3, 4, 2), torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    for method in ("sequential", "scan"):
        energy, path = viterbi(u, p, method)
        assert torch.allclose(sequence_energy(u, p, path), energy) and (energy == 0).all()


def test_the_scan_creates_nothing_on_the_default_device():
    gen = torch.Generator().manual_seed(3)
    u, p = torch.randn(4, 20, 5, generator=gen), torch.randn(5, 5, generator=gen)
    expected = forward_free_energy(u, p, 1.0, "scan"), viterbi(u, p, "scan")[1]
    with torch.device("meta"):  # a tensor made without naming its device would land here
        got = forward_free_energy(u, p, 1.0, "scan"), viterbi(u, p, "scan")[1]
    assert got[0].device.type == "cpu" and torch.allclose(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_auto_picks_the_scan_only_for_long_chains_on_a_gpu():
    assert not use_scan(torch.zeros(256, 128, 32), "auto")  # a CPU: the sequential loop is work-efficient
    assert use_scan(torch.zeros(256, 128, 32, device="meta"), "scan")
    with pytest.raises(ValueError, match="method=fast"):
        use_scan(torch.zeros(1, 2, 2), "fast")


def test_the_sequential_loops_run_on_one_thread_and_give_the_threads_back():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_thread(torch.device("cpu")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), one_thread(torch.device("cpu")):
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
        with one_thread(torch.device("meta")):
            assert torch.get_num_threads() == 2  # not the CPU's kernels: untouched
        seen = []
        original = torch.Tensor.amin

        def spy(self, *a, **k):
            seen.append(torch.get_num_threads())
            return original(self, *a, **k)

        torch.Tensor.amin = spy
        try:
            viterbi(torch.randn(2, 5, 3), torch.randn(3, 3), "sequential")
        finally:
            torch.Tensor.amin = original
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
