"""A learning-rate fix on an optimizer line that takes the lr from a setting (`lr=args.lr`, `lr=LR`,
`lr=config["lr"]`) says where the value comes from, and for `args.X` the flag to pass: writing the
literal into the line (what the location's rewrite, and so a patch, does) would silently override
the user's setting (issue 17)."""

from __future__ import annotations

import pytest

from tests.conftest import EXAMPLES, run_script
from tests.rules.timelines import make_timeline
from torchdoctor.rules._edits import argument_text
from torchdoctor.rules._fixes import lower_learning_rate


def timeline(text: str, argv: list[str] | None = None):
    """A run at lr 0.1 whose optimizer was made by the statement `text` on line 7 of /x/train.py."""
    tl = make_timeline([1.0] * 10, lr=0.1)
    tl.sources["optimizer"] = {"file": "/x/train.py", "line": 7, "text": text}
    tl.run.argv = ["/x/train.py", *(argv or [])]
    return tl


# -- argument_text ----------------------------------------------------------------------------------
def test_argument_text_finds_keyword_and_positional_values():
    assert argument_text("opt = SGD(p, lr=args.lr, momentum=0.9)", "lr") == "args.lr"
    assert argument_text('opt = SGD(p, lr=config["lr"])', "lr") == 'config["lr"]'
    assert argument_text("opt = SGD(p, LR, 0.9)", "lr", position=1) == "LR"
    assert argument_text("    opt = SGD(\n        p,\n        lr=cfg.optim.lr * 2,\n    )", "lr") == "cfg.optim.lr * 2"
    assert argument_text("opt = SGD(p, momentum=0.9)", "lr", position=1) is None
    assert argument_text("opt = SGD(*groups, 0.1)", "lr", position=1) is None
    assert argument_text("x = 1", "lr") is None


# -- lower_learning_rate ----------------------------------------------------------------------------
def test_lr_from_args_names_the_flag_and_keeps_the_literal_rewrite():
    text = "optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)"
    fix = lower_learning_rate(timeline(text), None)
    assert fix is not None and fix.params["lr"] == 0.01
    assert fix.location == {"file": "/x/train.py", "line": 7, "before": text,
                            "after": "optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)"}
    assert fix.text.endswith("Pass --lr 0.01 (your optimizer takes lr from args.lr).")


def test_an_underscored_arg_is_a_dashed_flag_unless_the_run_was_given_it_otherwise():
    text = "optimizer = optim.SGD(model.parameters(), lr=args.learning_rate)"
    assert "Pass --learning-rate 0.01 (your optimizer takes lr from args.learning_rate)." in \
        lower_learning_rate(timeline(text), None).text
    given = timeline(text, ["--learning_rate=0.1", "--epochs", "3"])
    assert "Pass --learning_rate 0.01 " in lower_learning_rate(given, None).text
    # `opt.lr` is a flag only when the run was given it.
    other = "optimizer = optim.SGD(model.parameters(), lr=opt.lr)"
    assert "Pass --lr 0.01 (your optimizer takes lr from opt.lr)." in \
        lower_learning_rate(timeline(other, ["--lr", "0.1"]), None).text


@pytest.mark.parametrize("value", ["LR", 'config["lr"]', "hparams.lr", "get_lr()"])
def test_a_name_or_config_entry_says_where_to_set_it(value):
    text = f"optimizer = optim.SGD(model.parameters(), {value}, momentum=0.9)"
    fix = lower_learning_rate(timeline(text), None)
    assert fix.location["after"] == "optimizer = optim.SGD(model.parameters(), 0.01, momentum=0.9)"
    assert f"Set it to 0.01 where {value} gets its value (your optimizer takes lr from {value})" in fix.text
    assert "override" in fix.text and "Pass --" not in fix.text


@pytest.mark.parametrize("value", ["0.1", "1e-1", "-(-0.1)", "0.05 * 2"])
def test_a_literal_lr_adds_nothing(value):
    fix = lower_learning_rate(timeline(f"optimizer = optim.SGD(model.parameters(), lr={value})"), None)
    assert fix.text == "Lower the learning rate 10x, from 0.1 to 0.01."


def test_without_a_recorded_line_there_is_no_location_and_no_source_text():
    tl = make_timeline([1.0] * 10, lr=0.1)
    fix = lower_learning_rate(tl, None)
    assert fix.location is None and "your optimizer takes" not in fix.text


# -- a real run -------------------------------------------------------------------------------------
def test_divergence_example_takes_lr_from_args():
    run = run_script(EXAMPLES / "divergence.py", "--epochs", "2")
    finding = run.report.by_code("divergence")
    assert finding is not None
    fix = next(f for f in finding.fixes if f.action == "lower_learning_rate")
    new = f"{fix.params['lr']:g}"
    assert fix.location["before"] == "    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)"
    assert fix.location["after"] == f"    optimizer = torch.optim.Adam(model.parameters(), lr={new})"
    assert f"Pass --lr {new} (your optimizer takes lr from args.lr)." in fix.text
