import pytest

from tests.rules.timelines import LayerInfo, findings, make_timeline
from torchdoctor.findings import Severity
from torchdoctor.rules import NotEvaluated


def deep(ratio: float, depth: int = 6, steps: int = 20, first_kind: str = "weight"):
    """depth weight layers of equal size whose gradient shrinks geometrically towards the input."""
    layers = [LayerInfo(f"layers.{2 * i}", "Linear", [f"layers.{2 * i}.weight"], 100, "weight")
              for i in range(depth)]
    layers[0].kind = first_kind
    per_step = [ratio ** ((depth - 1 - i) / (depth - 1)) for i in range(depth)]
    types = {layer.name: layer.type for layer in layers}
    types.update({f"layers.{2 * i + 1}": "Sigmoid" for i in range(depth - 1)})
    return make_timeline([1.0] * steps, layers=layers, layer_norms=[per_step] * steps, module_types=types)


def test_severe_vanishing_is_an_error_at_the_first_layer():
    (finding,) = findings("vanishing_gradients", deep(1e-7))
    assert finding.severity is Severity.ERROR
    assert finding.where == "layers.0"
    assert finding.evidence["ratio_first_last"] == pytest.approx(1e-7)
    assert "layers.0" in finding.evidence["layers_below_threshold"]
    fix = finding.fixes[0]
    assert fix.action == "change_activation" and fix.params["replace"] == ["Sigmoid"]
    assert any(f.action == "add_normalization" for f in finding.fixes)


def test_moderate_vanishing_is_a_warning():
    (finding,) = findings("vanishing_gradients", deep(1e-4))
    assert finding.severity is Severity.WARNING


@pytest.mark.parametrize("ratio", [1.0, 0.1, 0.01, 10.0])
def test_ordinary_ratios_stay_clean(ratio):
    assert findings("vanishing_gradients", deep(ratio)) == []


def test_embeddings_are_not_the_first_layer():
    tl = deep(1e-7, depth=7, first_kind="embedding")
    (finding,) = findings("vanishing_gradients", tl)
    assert finding.where == "layers.2"


def test_shallow_models_are_not_evaluated():
    with pytest.raises(NotEvaluated):
        findings("vanishing_gradients", deep(1e-7, depth=2))


# -- the initialization fix matches the activations the model uses (issue 17) ----------------------
def stack(activation: str | None, depth: int = 6, label: str = "Net"):
    """`deep` with `activation` (or none) between the layers, the model named `label` by the script."""
    tl = deep(1e-7, depth=depth)
    types = {f"layers.{2 * i}": "Linear" for i in range(depth)}
    if activation:
        types.update({f"layers.{2 * i + 1}": activation for i in range(depth - 1)})
    tl.models[0].module_types = dict(sorted(types.items(), key=lambda kv: int(kv[0].split(".")[1])))
    tl.models[0].label = label
    return tl


def init_fix(tl):
    (finding,) = findings("vanishing_gradients", tl)
    (fix,) = [f for f in finding.fixes if f.action == "change_initialization"]
    return finding, fix


def test_a_sigmoid_model_gets_sigmoid_gain_and_the_advice_to_switch():
    finding, fix = init_fix(stack("Sigmoid"))
    assert fix.params == {"init": "xavier_uniform_", "activation": "Sigmoid", "gain": "sigmoid"}
    assert "calculate_gain('sigmoid')" in fix.snippet and "gain 1" in fix.text
    assert "ReLU/GELU with He" in fix.text and "add normalization" in fix.text
    assert "tanh" not in (fix.text + fix.snippet).lower() and "Conv2d" not in fix.snippet
    activation = finding.fixes[0]
    assert activation.action == "change_activation" and "Tanh" not in activation.snippet
    assert "nn.Sigmoid()" in activation.snippet


def test_a_tanh_model_gets_xavier_with_gain_five_thirds():
    finding, fix = init_fix(stack("Tanh"))
    assert fix.params == {"init": "xavier_uniform_", "activation": "Tanh", "gain": "tanh"}
    assert "gain 5/3" in fix.text and "calculate_gain('tanh')" in fix.snippet
    assert "sigmoid" not in (fix.text + fix.snippet).lower()
    assert finding.fixes[0].params["replace"] == ["Tanh"] and "Sigmoid" not in finding.fixes[0].snippet


def test_a_relu_model_gets_kaiming_and_no_activation_swap():
    finding, fix = init_fix(stack("ReLU", label="net"))
    assert fix.params == {"init": "kaiming_normal_", "nonlinearity": "relu", "activation": "ReLU"}
    assert fix.snippet == ("for m in net.modules():\n    if isinstance(m, nn.Linear):\n"
                           "        nn.init.kaiming_normal_(m.weight, nonlinearity='relu')")
    assert not any(f.action == "change_activation" for f in finding.fixes)
    assert "xavier" not in (fix.text + fix.snippet).lower()


def test_leaky_relu_and_a_mixed_saturating_model():
    _, leaky = init_fix(stack("LeakyReLU"))
    assert leaky.params["nonlinearity"] == "leaky_relu" and "nonlinearity='leaky_relu'" in leaky.snippet
    tl = stack("Sigmoid")
    tl.models[0].module_types["layers.1"] = "Tanh"  # one Tanh among Sigmoids: sigmoid's gain, tanh's mentioned
    _, mixed = init_fix(tl)
    assert mixed.params["gain"] == "sigmoid" and "feeding Tanh take gain 5/3" in mixed.text
