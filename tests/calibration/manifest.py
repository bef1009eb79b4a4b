"""What torchdoctor must say about each script of the calibration corpus.

A healthy script must come out with no finding of severity warning or above. A faulty twin must
be found with its code (or one of `also`) at `severity` or above, at a step within the bounds
where they are given; every other code named in `caused_by` that is present must carry one of
the causes given for it. `leads`: the expected finding is the first of warning or above (the cause leads the
report), counted by benchmarks/accuracy.py and asserted nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Case:
    script: str  # relative to tests/calibration
    args: tuple[str, ...] = ()
    code: str | None = None  # None: a healthy script
    also: tuple[str, ...] = ()  # other codes that are as right as `code`
    severity: str = "warning"  # the least severity the expected finding must have
    step_min: int | None = None
    step_max: int | None = None
    caused_by: dict[str, tuple[str, ...]] = field(default_factory=dict)  # other code -> the causes it may carry
    note: str = ""

    @property
    def healthy(self) -> bool:
        return self.code is None

    @property
    def path(self) -> Path:
        return HERE / self.script

    @property
    def name(self) -> str:
        """`faulty/mnist_cnn_adadelta --lr 100`: the script and its arguments, one id per case."""
        return " ".join([self.script.removesuffix(".py"), *self.args])


HEALTHY_SCRIPTS = sorted(p.name for p in (HERE / "healthy").glob("*.py"))

HEALTHY = [Case(f"healthy/{name}") for name in HEALTHY_SCRIPTS]
# Issue 16: the vision tasks beyond classification, on torchvision models and the bundled examples.
GAN = "../scripts/small_gan_faults.py"
EXAMPLES = "../../examples"
HEALTHY += [
    Case(GAN, ("--steps", "200"), note="issue 16: the GAN mistakes' healthy twin"),
    Case(f"{EXAMPLES}/detection.py", (), note="issue 16: Faster R-CNN (MobileNetV3 FPN), 40 steps"),
    Case(f"{EXAMPLES}/detection.py", ("--model", "retinanet", "--steps", "10")),
    Case(f"{EXAMPLES}/detection.py", ("--model", "ssdlite", "--steps", "10")),
    Case(f"{EXAMPLES}/segmentation.py", (), note="issue 16: LR-ASPP, 5 epochs, validation mIoU 0.21 -> 0.89"),
    Case(f"{EXAMPLES}/segmentation.py", ("--model", "deeplabv3", "--epochs", "1")),
    Case(f"{EXAMPLES}/dcgan.py", (), note="issue 16: a DCGAN on 16x16 blobs, neither side wins"),
    # issue 18's healthy twins
    Case("faulty/train_mode_after_validation.py", ("--fixed",)),
    Case("faulty/zero_grad_before_step.py", ("--fixed",)),
    Case("faulty/steplr_per_batch.py", ("--fixed",)),
    Case("healthy/cosine_per_batch.py", ("--warmup",)),
    Case("faulty/double_sigmoid_bce.py", ("--fixed",)),
    Case("faulty/amp_clip_before_unscale.py", ("--fixed",)),
    Case("faulty/data_leakage_resplit.py", ("--fixed",)),
    Case("faulty/labels_misaligned_memorizes.py", ("--fixed",), note="issue 18: one permutation for inputs and labels"),
]

BLOWUP_CONSEQUENCES = {"dead_units": ("divergence",), "vanishing_gradients": ("divergence",),
                       "loss_plateau": ("divergence",)}
# A missing zero_grad explains the divergence and the gradient growth; the units the blow-up killed
# may name either link of that chain.
ZERO_GRAD_CONSEQUENCES = {"divergence": ("missing_zero_grad",), "exploding_gradients": ("missing_zero_grad",),
                          "dead_units": ("missing_zero_grad", "divergence")}

FAULTY = [
    Case("faulty/resnet18_sgd_high_lr.py", ("--lr", "5.0"), "divergence", step_max=2,
         note="issue 14: resnet18 on FakeData, SGD lr 5.0: the loss jumps at step 1"),
    Case("faulty/resnet18_sgd_high_lr.py", ("--lr", "1.0"), "divergence", step_max=5,
         note="issue 14: 'the same at lr 1.0' (loss x13 at step 1, x38 by step 3)"),
    Case("faulty/resnet18_sgd_high_lr.py", ("--lr", "0.5"), "divergence", step_max=5,
         note="issue 14: 'the same at lr 0.5' (loss x7 at step 1, x28 by step 3)"),
    Case("faulty/adam_lr1_cnn.py", (), "divergence", step_max=5,
         note="issue 14: Adam lr 1.0 on a small CNN, loss x1e5 in the first steps"),
    Case("faulty/mnist_cnn_adadelta.py", ("--lr", "100"), "divergence", step_max=2,
         caused_by=BLOWUP_CONSEQUENCES,
         note="issue 14: Adadelta lr 100, F.relu CNN, blow-up at step 1 then at chance"),
    Case("faulty/mnist_cnn_adadelta.py", ("--lr", "0.001"), "loss_plateau",
         note="issue 14: lr 1000x too small: at chance, a warning with its cause"),
    Case("faulty/cifar_tutorial_too_short.py", (), "loss_plateau",
         note="issue 14: the CIFAR tutorial run too short to learn, 'info only'"),
    Case("faulty/labels_shuffled.py", (), "loss_plateau", also=("labels_misaligned",),
         note="issue 14 priors: at chance because the labels are apart from the inputs"),
    Case("faulty/missing_zero_grad.py", (), "missing_zero_grad", severity="error",
         caused_by=ZERO_GRAD_CONSEQUENCES,
         note="issue 14: the divergence (and what the blow-up killed) beside it must be its consequences"),
    Case("faulty/manual_sgd_leak.py", (), "memory_leak", severity="warning",
         note="issue 14: manual p.data.add_ loop, total_loss += loss"),
    Case("faulty/two_phase_diverges.py", (), "divergence", step_min=64, step_max=123,
         note="two-phase fine-tune, phase two (steps 64-123) at SGD lr 20"),
    Case("faulty/dead_units_grow.py", (), "dead_units",
         note="ReLU units that die during training at Adam lr 0.05"),
    Case("faulty/imbalanced_majority.py", (), "class_imbalance",
         note="issue 16/18: 20:1 labels, the model ends predicting the majority; twin healthy/class_weights.py"),
    Case(GAN, ("--fault", "not_detached", "--steps", "100"), "fake_not_detached",
         note="issue 16: netD(fake) without detach for the discriminator's step (retain_graph keeps it running)"),
    Case(GAN, ("--fault", "wrong_optimizer", "--steps", "100"), "optimizer_holds_other_model", severity="error",
         caused_by={"frozen_parameters": ("optimizer_holds_other_model",)},
         note="issue 16: optimizerG = Adam(netD.parameters())"),
    Case(GAN, ("--fault", "shared_noise", "--steps", "100"), "mode_collapse",
         note="issue 16: one noise vector repeated over the batch: every sample the same"),
    Case(f"{EXAMPLES}/dcgan.py", ("--fault", "overpowering"), "discriminator_overpowering",
         caused_by={"exploding_gradients": ("discriminator_overpowering",)},
         note="issue 16: D at 10x the lr and 5 steps per G step: D's loss ~0, G's climbs"),
    Case(f"{EXAMPLES}/dcgan.py", ("--fault", "mode_collapse"), "mode_collapse"),
    Case(f"{EXAMPLES}/dcgan.py", ("--fault", "not_detached"), "fake_not_detached"),
    Case(f"{EXAMPLES}/dcgan.py", ("--fault", "wrong_optimizer"), "optimizer_holds_other_model", severity="error",
         caused_by={"frozen_parameters": ("optimizer_holds_other_model",)}),
    Case(f"{EXAMPLES}/segmentation.py", ("--fault", "background_only"), "class_imbalance",
         note="issue 16: background at 98% of the pixels, the model predicts only background"),
    Case(f"{EXAMPLES}/detection.py", ("--fault", "high_lr", "--steps", "10"), "nonfinite_loss", severity="critical",
         also=("exploding_gradients",), note="issue 16: SGD lr 0.5 on Faster R-CNN: every loss part NaN by step 6"),
    Case("faulty/train_mode_after_validation.py", (), "train_mode_missing", step_min=20, step_max=20,
         note="issue 18: model.eval() for validation, model.train() never called again (60 of 80 steps)"),
    Case("faulty/zero_grad_before_step.py", (), "optimizer_no_update", severity="error",
         note="issue 18: zero_grad() between backward() and step(): 36/36 steps change nothing"),
    Case("faulty/zero_grad_before_step.py", ("--in-place",), "optimizer_no_update", severity="error"),
    Case("faulty/steplr_per_batch.py", (), "scheduler_misuse",
         note="issue 18: StepLR(step_size=2) stepped per batch: lr 0.1 -> 1e-60 in 6 epochs"),
    Case("faulty/steplr_per_batch.py", ("--scheduler", "cosine"), "scheduler_misuse"),
    Case("faulty/double_sigmoid_bce.py", (), "double_sigmoid", severity="error",
         note="issue 18: a final nn.Sigmoid before BCEWithLogitsLoss"),
    Case("faulty/double_sigmoid_bce.py", ("--functional",), "double_sigmoid", severity="error"),
    Case("faulty/amp_clip_before_unscale.py", (), "amp_clip_before_unscale",
         caused_by={"loss_plateau": ("amp_clip_before_unscale",)},
         note="issue 18: clip_grad_norm_ on gradients scaled by 65536: max_norm 1 acts as 1.5e-5"),
    Case("faulty/labels_misaligned_memorizes.py", (), "labels_misaligned", severity="error",
         caused_by={"overfitting": ("labels_misaligned",)},
         note="issue 18: inputs shuffled apart from their labels: training memorized, validation at chance"),
    Case("faulty/data_leakage_resplit.py", (), "data_leakage", severity="error",
         note="issue 18: random_split drawn twice: 80% of validation seen in training"),
]

CASES = HEALTHY + FAULTY
