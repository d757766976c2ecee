"""A fuzz test of bad input: a few hundred generated bad values (every numeric key of several real
configs: negative, zero, NaN, +-inf) and bad data files (every format: empty, truncated, wrong
arrays, wrong dtype, wrong extension, a huge line, random bytes).

Each one goes through `check_before_writing` — the very checks ebm-run's pre-run callback makes
before Hydra creates a folder — and must either pass every check or be refused with one line
that names the setting (or the file); NaN and infinities are always refused; nothing is written.
A sample of them also goes through ebm-run's main(), for the exit code and the folder."""

import math
from collections import Counter

import numpy as np
import pytest
from omegaconf import OmegaConf

from ebm_cli.errors import UserError, one_line
from ebm_cli.tasks.checks import check_before_writing
from helpers import make_cfg, run_cli

SMOKE = ("debug=smoke", "logger.landscape_every=0")
BASES = {  # the configs whose numeric keys are fuzzed
    "curves": (),
    "latent": ("experiment=curves_latent", "energy/z=box", "energy.prior=l2"),
    "cd": ("loss=cd", "inference=langevin"),
    "hinge": ("loss=hinge", "inference=gradient"),
    "dfo": ("inference=dfo",),
    "cem": ("inference=cem",),
    "video": ("experiment=video_latent",),
    "translation": ("experiment=translation_latent",),
}
GROUPS = ("trainer", "logger", "dataset", "energy", "inference", "loss", "beta")
BAD = ("nan", "inf", "-inf", "-1", "0")  # -inf only for the keys that accept negative values
NEGATIVE_OK = {"x_min", "x_max", "y_min", "y_max", "low", "slice_x"}
# sizes, rates and counts: -1 is never one of their values
POSITIVE = {"batch_size", "lr", "k", "points", "hidden", "train_size", "test_size", "grid_points", "chains", "steps",
            "starts", "samples", "iters", "buffer_size", "step_size", "margin", "exclude", "value", "resolution",
            "log_every", "video_examples", "text_examples", "channels", "size", "context", "moves", "sprite_size",
            "speed", "dim", "restarts", "max_valid", "elite", "sigma", "temperature", "beta_start", "beta_end",
            "start", "end", "max_abs"}


def numeric_keys(cfg):
    out = []
    for group in GROUPS:
        node = OmegaConf.to_container(cfg[group], resolve=True)

        def walk(prefix, value):
            if isinstance(value, dict):
                for k, v in value.items():
                    if not k.startswith("_"):
                        walk(f"{prefix}.{k}", v)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append(prefix)

        walk(group, node)
    return out + ["seed"]


def value_cases():
    """Every numeric key, in the first base config that has it, with each bad value."""
    cases, seen = [], set()
    for base, overrides in BASES.items():
        cfg = make_cfg(*SMOKE, *overrides)
        for key in numeric_keys(cfg):
            target = OmegaConf.select(cfg, key.rsplit(".", 1)[0] + "._target_") if "." in key else None
            if (key, target) in seen:
                continue
            seen.add((key, target))
            for bad in BAD:
                if bad != "-inf" or key.rsplit(".", 1)[-1] in NEGATIVE_OK:
                    cases.append((base, overrides, key, bad))
    return cases


VALUE_CASES = value_cases()


def outcome(overrides, out_dir):
    """None when every check passes, else the one line ebm-run would print."""
    try:
        check_before_writing(make_cfg(*SMOKE, *overrides), out_dir)
    except UserError as err:
        return str(err)
    except Exception as exc:  # composition errors: the CLI prints one_line(exc)
        return one_line(exc)
    return None


@pytest.mark.slow
@pytest.mark.parametrize("base_name", list(BASES))
def test_generated_bad_values(tmp_path, base_name):
    """The values of one base config (one test per base, so that they spread over workers)."""
    cases = [case for case in VALUE_CASES if case[0] == base_name]
    messages, refused, accepted, unnamed = Counter(), 0, [], []
    for base, overrides, key, bad in cases:
        message = outcome((*overrides, f"{key}={bad}"), tmp_path / "run")
        name = key.rsplit(".", 1)[-1]
        if message is None and (bad in ("nan", "inf", "-inf") or (bad == "-1" and name in POSITIVE)):
            accepted.append(f"{base}: {key}={bad}")
        if message is not None:
            refused += 1
            assert "\n" not in message and message.strip(), (key, bad, message)
            if name not in message:
                unnamed.append(f"{base}: {key}={bad}: {message}")
            messages[message] += 1
    assert accepted == [], "accepted: " + "; ".join(accepted)
    assert unnamed == [], "messages that do not name the setting: " + "; ".join(unnamed)
    assert not (tmp_path / "run").exists()
    assert refused >= len(cases) // 2, (len(cases), refused)
    print(f"{base_name}: {len(cases)} generated values, {refused} refused, {len(messages)} distinct messages")


def test_the_generated_values_cover_every_base():
    assert len(VALUE_CASES) >= 300 and {case[0] for case in VALUE_CASES} == set(BASES)


def bad_files(folder):
    """(format, variant, path) for every format and every way a file can be wrong."""
    folder.mkdir()
    good = {
        "csv": "x,y\n" + "".join(f"{i / 20},{(-1) ** i * 0.5}\n" for i in range(40)),
        "tsv": "".join(f"el gato {w}\tthe cat {w}\n" for w in ("a", "b", "c", "d", "e")),
    }
    npz = folder / "good.npz"
    np.savez(npz, context=np.zeros((6, 3, 8, 8), np.float32), futures=np.zeros((6, 2, 8, 8), np.float32))
    npy = folder / "good.npy"
    np.save(npy, np.zeros((4, 6, 8, 8), np.uint8))
    blobs = {"csv": good["csv"].encode(), "tsv": good["tsv"].encode(), "npz": npz.read_bytes(), "npy": npy.read_bytes()}
    files = []

    def add(fmt, variant, data):
        path = folder / f"{variant}.{fmt}"
        path.write_bytes(data)
        files.append((fmt, variant, path))

    for fmt, blob in blobs.items():
        add(fmt, "empty", b"")
        if fmt in ("npz", "npy"):  # a text file cut short can still be a valid (shorter) file
            add(fmt, "truncated", blob[: len(blob) // 3])
        add(fmt, "random_bytes", bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8)))
        add(fmt, "huge_line", b"x" * 2_000_000)
        for other, other_blob in blobs.items():
            if other != fmt:
                add(fmt, f"{other}_content", other_blob)
    arrays = [("wrong_names", {"frames": np.zeros((4, 3, 8, 8))}),
              ("wrong_dtype", {"context": np.array([["a"] * 8] * 8), "futures": np.zeros((8, 8))}),
              ("wrong_shape", {"context": np.zeros((4, 8, 8)), "futures": np.zeros((4, 2, 8, 8))}),
              ("out_of_range", {"context": np.full((4, 3, 8, 8), 7.0), "futures": np.zeros((4, 2, 8, 8))}),
              ("nan", {"context": np.full((4, 3, 8, 8), np.nan), "futures": np.zeros((4, 2, 8, 8))}),
              ("zero_samples", {"context": np.zeros((0, 3, 8, 8)), "futures": np.zeros((0, 2, 8, 8))}),
              ("bad_counts", {"context": np.zeros((4, 3, 8, 8)), "futures": np.zeros((4, 2, 8, 8)),
                              "num_futures": np.array([0, 1, 2, 3])})]
    for variant, content in arrays:
        path = folder / f"{variant}.npz"
        np.savez(path, **content)
        files.append(("npz", variant, path))
    for variant, array in [("float", np.zeros((4, 6, 8, 8), np.float32)), ("three_dims", np.zeros((4, 6, 8), np.uint8)),
                           ("one_frame", np.zeros((1, 6, 8, 8), np.uint8))]:
        path = folder / f"{variant}.npy"
        np.save(path, array)
        files.append(("npy", variant, path))
    for variant, text in [("no_tab", "el gato the cat\n"), ("reserved", "el gato\tthe <pad> cat\n"),
                          ("empty_target", "el gato\t \nel perro\tthe dog\n"), ("one_source", "el gato\tthe cat\n")]:
        add("tsv", variant, text.encode())
    for variant, text in [("header", "a,b\n1,2\n"), ("not_number", "x,y\n1,abc\n"), ("columns", "x,y\n1,2,3\n"),
                          ("inf", "x,y\n1,inf\n2,3\n"), ("one_x", "x,y\n1,2\n1,3\n")]:
        add("csv", variant, text.encode())
    return files


PRESET = {"csv": ("dataset=curves_csv",), "tsv": ("experiment=translation_latent",),
          "npz": ("experiment=video_latent",), "npy": ("experiment=video_latent",)}


@pytest.mark.slow
def test_generated_bad_files(tmp_path):
    files = bad_files(tmp_path / "files")
    messages = Counter()
    for fmt, variant, path in files:
        message = outcome((*PRESET[fmt], f"dataset.path={path}"), tmp_path / "run")
        assert message is not None, f"{fmt} {variant} was accepted"
        assert "\n" not in message and str(path.name) in message or "dataset.path" in message, (variant, message)
        messages[message.replace(str(path), "<file>")] += 1
    assert not (tmp_path / "run").exists()
    assert len(files) >= 40
    print(f"{len(files)} generated bad files, {len(messages)} distinct messages")


@pytest.mark.slow
def test_a_sample_through_the_cli(tmp_path):
    """Every 40th generated value through ebm-run's main(): exit code 1, one line, no folder, nothing on disk."""
    for base, overrides, key, bad in VALUE_CASES[::40]:
        if outcome((*overrides, f"{key}={bad}"), tmp_path / "run") is None:
            continue
        proc = run_cli([*SMOKE, *overrides, f"{key}={bad}", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("ebm-run: error: "), (key, bad,
                                                                                                      proc.stderr)
        assert list(tmp_path.iterdir()) == [], (key, bad)


def test_nan_and_infinities_are_refused_for_a_few_keys_quickly(tmp_path):
    """The fast part of the fuzz test, for the quick suite."""
    for key in ("trainer.lr", "inference.dedup", "dataset.noise", "beta.value", "loss.grid_points", "energy.hidden"):
        for bad in ("nan", "inf"):
            message = outcome((f"{key}={bad}",), tmp_path / "run")
            assert message is not None and "\n" not in message and key.rsplit(".", 1)[-1] in message, (key, message)
    assert math.isfinite(len(VALUE_CASES))
