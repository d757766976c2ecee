"""The curves dataset: generated valid sets, the CSV loader, and its errors."""

import math

import pytest
import torch

from ebm_cli.build import build, build_dataset
from ebm_cli.datasets.curves.data import branch_functions, group_by_x, read_curves_csv
from ebm_cli.errors import UserError
from helpers import make_cfg, write_csv


def load_curves(cfg, seed):
    """The dataset of cfg at this run seed, built afresh (build_dataset caches one per process)."""
    return build(cfg.dataset, "dataset", run_seed=seed)


def test_generated_valid_sets_are_the_branches():
    cfg = make_cfg("dataset.test_size=11", "dataset.train_size=300")
    data = build_dataset(cfg)
    assert data.x_train.shape == (300, 1) and data.y_train.shape == (300, 1)
    assert data.valid.shape == (11, 3, 1) and data.valid_mask.all()
    x = data.x_test[:, 0]
    expected = torch.stack([0.6 + 0.3 * torch.sin(math.pi * x), 0.4 * x, -0.6 + 0.3 * torch.cos(math.pi * x)], 1)
    assert torch.allclose(data.valid[..., 0], expected, atol=1e-6)
    # every training y lies near one of the branches (noise 0.02 -> within 5 sigma)
    train_branches = torch.stack([f(data.x_train[:, 0]) for f in branch_functions(cfg.dataset.branches)], 1)
    assert ((train_branches - data.y_train).abs().min(dim=1).values < 0.1).all()
    assert data.y_space.low < float(data.valid.min()) and data.y_space.high > float(data.valid.max())


def test_generation_is_seeded():
    cfg = make_cfg()
    a, b, c = load_curves(cfg, 0), load_curves(cfg, 0), load_curves(cfg, 1)
    assert a is not b
    assert torch.equal(a.y_train, b.y_train) and not torch.equal(a.y_train, c.y_train)


def test_bad_branch_expression_is_one_clear_error():
    with pytest.raises(UserError, match="unknown function"):
        branch_functions(["os.system(1)"])
    with pytest.raises(UserError, match="cannot parse"):
        branch_functions(["0.4 * "])


def test_group_by_x_merges_float_noise_past_float32():
    x = torch.tensor([0.1, 0.2, 0.1000000001, 0.2, 0.2], dtype=torch.float64)
    y = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64)
    xs, valid, mask = group_by_x(x, y)
    assert xs.tolist() == pytest.approx([0.1, 0.2])
    assert mask.sum(1).tolist() == [2, 3]
    assert sorted(valid[0][mask[0]].tolist()) == [1.0, 3.0]
    assert sorted(valid[1][mask[1]].tolist()) == [2.0, 4.0, 5.0]


def test_x_on_any_scale_keeps_its_distinct_values():
    """x in seconds times 1e-7 (30 values 7e-9 apart) are 30 x, not one (6 decimals made them one);
    a fine grid with a far stray x keeps every x; float noise past float32's digits is one x."""
    x = torch.linspace(1e-7, 3e-7, 30, dtype=torch.float64).repeat_interleave(2)
    x[3] *= 1 + 1e-10
    xs, valid, mask = group_by_x(x, torch.arange(60.0, dtype=torch.float64))
    assert len(xs) == 30 and mask.sum(1).tolist() == [2] * 30
    grid = torch.cat([torch.arange(1000, dtype=torch.float64) / 1000, torch.tensor([5000.0], dtype=torch.float64)])
    assert len(group_by_x(grid, grid)[0]) == 1001


def test_csv_with_four_branches_splits_by_x(tmp_path):
    branches = [lambda x: 1.0, lambda x: 0.3 * x, lambda x: -0.5, lambda x: -1.0 + x * x]
    xs = [i / 20 - 1 for i in range(41)]
    path = write_csv(tmp_path / "four.csv", branches, xs)
    cfg = make_cfg("dataset=curves_csv", f"dataset.path={path}")
    data = build_dataset(cfg)
    assert data.valid.shape[1] == 4 and data.valid_mask.all()
    assert len(data.x_test) == round(0.2 * 41) and len(data.x_train) == 4 * (41 - len(data.x_test))
    # train and test x are disjoint
    assert not set(data.x_test[:, 0].tolist()) & set(data.x_train[:, 0].tolist())


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "empty"),
        ("a,b\n1,2\n", "line 1: expected the header 'x,y'"),
        ("x,y\n1,2\n3\n", "line 3: expected 2 columns"),
        ("x,y\n1,2\n3,abc\n", "line 3: not a number"),
        ("x,y\n1,nan\n", "line 2: non-finite"),
        ("x,y\n", "no data rows"),
        ("# made by hand\nx,y\n1,2\n# a note\n3,abc\n", "line 5: not a number"),  # comments keep the line count
        ("x,y\n1,2\n3,4e39\n", "line 3: '3,4e39' is beyond float32's range"),  # finite in float64, inf in float32
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as err:
        read_curves_csv(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_and_binary_csv(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_curves_csv(str(tmp_path / "nope.csv"))
    path = tmp_path / "random.csv"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UserError):
        read_curves_csv(str(path))


def test_inference_k_null_is_as_many_candidates_as_the_data_has_answers(tmp_path):
    """inference.k=null (the default): the grid returns as many candidates per x as the data's
    largest valid set, five for a five-branch CSV, three for the default curves."""
    from ebm_cli.build import build_run

    csv = write_csv(tmp_path / "five.csv", [lambda x, k=k: 0.4 * k for k in range(-2, 3)], [i / 50 for i in range(-50, 51)])
    five = build_run(make_cfg("dataset=curves_csv", f"dataset.path={csv}"))
    assert five.data.outputs_per_input == 5 and five.inference.k == 5 and five.meta["outputs_per_input"] == 5
    assert build_run(make_cfg("debug=smoke")).inference.k == 3  # generated: its three branches
    assert build_run(make_cfg("dataset=curves_csv", f"dataset.path={csv}", "inference.k=2")).inference.k == 2


@pytest.mark.parametrize("content,rows", [
    ("x,y\n0.1,1\n0.1,-1\n\n0.2,2.5e-3\n", [[0.1, 1], [0.1, -1], [0.2, 2.5e-3]]),  # a blank line
    ('X, Y\n"0.5","1.25"\n-3,4\n', [[0.5, 1.25], [-3, 4]]),  # header case and spaces, quoted numbers
    ("x,y\n1e13,1\n-0.000001,7\n", [[1e13, 1], [-0.000001, 7]]),
    ("\ufeffx,y\n0.1,1\n0.2,2\n", [[0.1, 1], [0.2, 2]]),  # Excel's "CSV UTF-8": a byte-order mark
    ("# from the lab, run 2\n\nx,y # columns\n0.1,1\n# a pause\n0.2,2 # checked\n", [[0.1, 1], [0.2, 2]]),
])
def test_the_fast_csv_reader_reads_what_the_row_by_row_reader_reads(tmp_path, content, rows):
    from ebm_cli.datasets.curves.data import _read_row_by_row, _read_well_formed

    path = tmp_path / "rows.csv"
    path.write_text(content, encoding="utf-8")
    fast = _read_well_formed(str(path))
    assert fast is not None and torch.equal(fast, _read_row_by_row(str(path)))
    assert torch.equal(fast, torch.tensor(rows, dtype=torch.float64).float())
    assert torch.equal(read_curves_csv(str(path)), fast)


@pytest.mark.parametrize("content,message", [
    ('x,y\n"1#2",3\n0.2,2\n', "line 2: not a number: '1#2,3'"),  # a # inside quotes is not a comment
    ('x,y\n"1#",2\n",3\n4,5\n', "line 2: not a number"),  # nor does it join two lines into a row
])
def test_a_hash_inside_quotes_is_part_of_the_field(tmp_path, content, message):
    path = tmp_path / "quoted.csv"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_curves_csv(str(path))


def test_a_file_the_fast_reader_refuses_still_names_its_line(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("x,y\n" + "0.5,1\n" * 1000 + "0.5,inf\n")
    with pytest.raises(UserError, match="line 1002: non-finite value"):
        read_curves_csv(str(path))
