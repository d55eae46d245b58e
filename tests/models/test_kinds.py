"""Contract tests run for every registered model kind (a new kind module is checked here automatically).

Each kind is built from its options (tiny ones where :data:`TINY` has an entry, else its defaults) on a
smooth image, stored and restored the way checkpoints do it, and run through one short sampling.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sindiffusion.checkpoint import model_from_checkpoint
from sindiffusion.config import DiffusionConfig, load_params
from sindiffusion.diffusion import make_sampler
from sindiffusion.diffusion.gaussian import GaussianDiffusion
from sindiffusion.generate import ModelBundle, generate
from sindiffusion.models.kinds import MODEL_KINDS, ModelKind, kind_of_checkpoint
from tests.tiny import TINY_MODEL_SECTION, smooth_image, write_params_file

#: kind -> ``model`` section keys that keep the test fast (kinds not listed run with their defaults)
TINY: dict[str, dict] = {"unet": TINY_MODEL_SECTION}
DIFFUSION = DiffusionConfig(timesteps=100)


@pytest.fixture(scope="module", params=sorted(MODEL_KINDS))
def kind(request) -> ModelKind:
    return MODEL_KINDS.get(request.param)


@pytest.fixture(scope="module")
def options(kind, tmp_path_factory):
    """The kind's options as ``params.yaml`` gives them (so the config engine accepts ``model.kind``)."""
    path = tmp_path_factory.mktemp(kind.name) / "params.yaml"
    write_params_file(path, {"model": {"kind": kind.name, **TINY.get(kind.name, {})}})
    return load_params(path).section("model")


@pytest.fixture(scope="module")
def built(kind, options):
    """``(diffusion, image [3, H, W] in [-1, 1], model)``; the image respects the kind's geometry."""
    g = kind.geometry(options)
    side = max(g.min_side, 16)
    side += -side % g.size_multiple
    image = smooth_image(0, side)[0]
    diffusion = GaussianDiffusion.from_config(
        DIFFUSION.schedule, DIFFUSION.timesteps, DIFFUSION.beta_start, DIFFUSION.beta_end
    )
    torch.manual_seed(0)
    return diffusion, image, kind.build(options, diffusion, image).eval()


def _checkpoint(kind: ModelKind, options, image: torch.Tensor, model: torch.nn.Module) -> dict:
    state = model.state_dict()
    return {
        "config": {"model": kind.stored_config(options), "diffusion": dataclasses.asdict(DIFFUSION)},
        "image": {"name": "img", "size": list(image.shape[-2:])},
        "model": state,
        "ema": state,
    }


class TestModelKindContract:
    def test_describes_itself(self, kind, options):
        assert kind.name and kind.help and isinstance(kind.trainable, bool)
        assert isinstance(options, kind.options) and options.kind == kind.name
        assert dataclasses.is_dataclass(kind.options) and kind.options.__dataclass_params__.frozen

    def test_geometry_and_receptive_field(self, kind, options, built):
        _, image, _ = built
        g = kind.geometry(options)
        assert g.size_multiple >= 1 and g.min_side >= 1
        assert kind.receptive_field(options, tuple(image.shape[-2:])) >= 1

    def test_maps_noisy_images_to_eps_of_the_same_shape(self, built):
        diffusion, image, model = built
        t = torch.tensor([10, 90])
        x_t = diffusion.q_sample(image[None].expand(2, -1, -1, -1), t, torch.randn(2, *image.shape))
        with torch.no_grad():
            eps = model(x_t, t)
        assert eps.shape == x_t.shape and bool(torch.isfinite(eps).all())

    def test_trainable_iff_it_has_parameters_to_optimise(self, kind, built):
        assert kind.trainable == any(p.requires_grad for p in built[2].parameters())

    def test_checkpoint_round_trip_gives_the_same_model(self, kind, options, built):
        diffusion, image, model = built
        ckpt = _checkpoint(kind, options, image, model)
        assert kind_of_checkpoint(ckpt) is kind
        stored = kind.stored_config(options)
        assert kind.stored_config(kind.options_from_stored(stored)) == stored
        restored = model_from_checkpoint(ckpt)
        x, t = torch.randn(1, *image.shape), torch.tensor([42])
        with torch.no_grad():
            assert torch.equal(restored(x, t), model(x, t))

    def test_one_sampling(self, kind, options, built):
        diffusion, image, model = built
        bundle = ModelBundle(model, diffusion, _checkpoint(kind, options, image, model), torch.device("cpu"))
        size = tuple(image.shape[-2:])
        samples, timings = generate(bundle, 2, size, make_sampler("ddim", diffusion, 3), seed=0)
        assert samples.shape == (2, 3, *size) and bool(torch.isfinite(samples).all())
        assert float(samples.abs().max()) <= 1.0 and not torch.equal(samples[0], samples[1])
