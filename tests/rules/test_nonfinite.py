import math

from tests.rules.timelines import Event, LayerInfo, findings, make_timeline


def nan_run(origin: str, **data):
    losses = [2.0 - 0.01 * i for i in range(10)] + [math.nan] * 5
    tl = make_timeline([1.0] * 10 + [math.nan] * 5, losses=losses)
    tl.events.append(Event("nonfinite_loss", 10, 0, {"value": math.nan, "origin": origin, **data}))
    return tl


def test_origin_input_prescribes_cleaning_the_data():
    (finding,) = findings("nonfinite_loss", nan_run("input", input={"tensor": "model input", "nan_count": 3}))
    assert finding.step == 10 and finding.evidence["origin"] == "input" and finding.where is None
    assert finding.fixes[0].action == "clean_input_data"
    assert finding.evidence["last_finite_step"] == 9


def test_origin_loss_prescribes_the_stable_loss():
    (finding,) = findings("nonfinite_loss", nan_run("loss"))
    assert finding.fixes[0].action == "fix_loss_input"
    assert all(f.action != "lower_learning_rate" for f in finding.fixes)


def test_loss_overflow_after_an_early_blow_up_prescribes_the_learning_rate():
    # The loss op made the Inf, but only because the run blew up in its first steps: lowering
    # the learning rate is the fix, not rewriting a (built-in) loss.
    tl = make_timeline([14.2, 20.4, 47.3, 1630.0, 7.28e6, math.nan],
                       losses=[25.6, 22.2, 11.4, 238.0, 1.43e7, math.inf], lr=0.012)
    tl.events.append(Event("nonfinite_loss", 5, 0, {"value": math.inf, "origin": "loss"}))
    (finding,) = findings("nonfinite_loss", tl)
    assert finding.evidence["gradients_were_exploding"] is True
    assert [f.action for f in finding.fixes] == ["lower_learning_rate", "clip_gradients"]
    assert finding.fixes[0].params["lr"] == 0.0012


def test_module_overflow_after_the_loss_climbed_prescribes_the_learning_rate():
    losses = [1.0, 0.9, 3.0, 40.0, 900.0, math.nan]
    tl = make_timeline([1.0] * 5 + [math.nan], losses=losses, lr=0.1)
    tl.events.append(Event("nonfinite_loss", 5, 0, {"value": math.nan, "origin": "fc2", "detail": "x"}))
    (finding,) = findings("nonfinite_loss", tl)
    actions = [f.action for f in finding.fixes]
    assert "lower_learning_rate" in actions and "normalize_input" not in actions


def test_origin_module_is_where():
    (finding,) = findings("nonfinite_loss", nan_run("features.3", module_type="Conv2d"))
    assert finding.where == "features.3"
    assert "features.3" in finding.title


def test_no_event_no_finding():
    assert findings("nonfinite_loss", make_timeline([1.0] * 10)) == []


def test_nonfinite_gradient_points_at_the_layer_nearest_the_loss():
    layers = [LayerInfo("fc1", "Linear", ["fc1.weight", "fc1.bias"], 10, "weight"),
              LayerInfo("fc2", "Linear", ["fc2.weight"], 10, "weight"),
              LayerInfo("fc3", "Linear", ["fc3.weight"], 10, "weight")]
    tl = make_timeline([1.0] * 5, layers=layers, layer_norms=[[1.0, 1.0, 1.0]] * 5)
    tl.steps[3].nonfinite_grads = ["fc1.weight", "fc1.bias", "fc2.weight"]
    tl.events.append(Event("nonfinite_gradient", 3, 0, {"params": ["fc2.weight", "fc1.weight", "fc1.bias"]}))
    (finding,) = findings("nonfinite_gradient", tl)
    assert finding.step == 3 and finding.where == "fc2"
    assert finding.evidence["first_affected"] == ["fc2.weight"]
    assert finding.evidence["next_finite_layer"] == "fc3"
    assert finding.evidence["params"] == ["fc1.weight", "fc1.bias", "fc2.weight"]
