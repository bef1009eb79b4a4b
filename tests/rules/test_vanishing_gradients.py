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
