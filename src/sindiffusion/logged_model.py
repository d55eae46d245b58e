"""A trained model as an MLflow model: the ``pyfunc`` flavour, and loading one back by URI.

The train stage logs every model it writes (both kinds: a trained UNet, and the training-free
``patch`` model whose checkpoint holds its image instead of weights) as an MLflow *logged model*
(:meth:`sindiffusion.tracking.MlflowTracker.log_model`). Its one artifact is the checkpoint file
itself (``data/model.pt``); the ``MLmodel`` beside it names this module as the ``python_function``
loader, so there is no pickled Python object in the model: loading it reads the checkpoint with
``torch.load(weights_only=True)``, like every other checkpoint load.

Loaded with ``mlflow.pyfunc.load_model(uri)``, the model draws samples::

    model.predict({"height": 64, "width": 96, "num": 4, "seed": 0})      # -> [4, 3, 64, 96] float32
    model.predict({"num": 2}, params={"steps": 50, "output": "uint8"})  # -> [2, H, W, 3] uint8

Input (one request, every column optional): ``height``/``width`` of the samples (default: the
training size), ``num`` samples (default 1), ``seed`` (default 0; sample ``i`` depends only on
``(seed, i)``). Params: the sampling settings (``sampler``, ``steps``, ``eta``, ``batch_size``,
``use_ema``, ``precision``, ``device``; defaults: params.yaml's ``sample`` section when the model
was trained) and ``output``: ``float`` (``[N, 3, H, W]`` float32 in [-1, 1], the default) or
``uint8`` (``[N, H, W, 3]`` RGB images). It samples from pure noise without the matching and the
finish (``sample.init: noise``, ``sample.match_steps: 0``, ``sample.finish: none``: all three need the
training image, which the logged model does not carry): the samples equal those of ``sindiffusion
sample`` with the same settings.

:func:`resolve_model_uri` is the other direction, for ``--model-uri`` (``models:/NAME@ALIAS``,
``models:/NAME/VERSION``, ``models:/m-ID``, ``runs:/RUN_ID/NAME``): it downloads the model's
``MLmodel``, refuses anything that is not a sindiffusion model (or not of a kind the command
takes) before fetching the weights, then downloads the checkpoint into a temporary folder.
"""

from __future__ import annotations

import dataclasses
import math
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .artifacts import sha256_file
from .checkpoint import load_checkpoint
from .config import IMAGE_FREE_SAMPLE, Params, SamplingSettings
from .models.kinds import kind_of_checkpoint

#: The ``python_function`` loader of a sindiffusion model (its ``MLmodel`` names this module).
LOADER_MODULE = __name__
#: The key of the ``MLmodel`` metadata that describes the model (kind, image, checkpoint).
METADATA_KEY = "sindiffusion"
#: The logged model's ``model_type`` (searchable in MLflow).
MODEL_TYPE = "sindiffusion"
#: ``predict(..., params={"output": ...})``: float samples, or RGB images.
OUTPUTS = ("float", "uint8")
#: The input columns of ``predict`` and the sample-section keys they set.
INPUTS = {"height": "height", "width": "width", "num": "num_samples", "seed": "seed"}
#: The sampling settings ``predict`` takes as params (MLflow param types).
PARAMS = {
    "sampler": "string",
    "steps": "long",
    "eta": "double",
    "batch_size": "long",
    "use_ema": "boolean",
    "precision": "string",
    "device": "string",
}


def describe(checkpoint: str | Path) -> dict[str, Any]:
    """What the logged model records about its checkpoint (``MLmodel`` metadata, model tags): the
    model kind, the training image (name, size, sha256), the training step and the file's sha256."""
    ckpt = load_checkpoint(checkpoint)
    image = ckpt["image"]
    return {
        "kind": kind_of_checkpoint(ckpt).name,
        "image": str(image.get("name", "")),
        "image_sha256": str(image.get("sha256", "")),
        "size": [int(v) for v in image["size"]],
        "step": int(ckpt["step"]),
        "checkpoint_sha256": sha256_file(checkpoint),
    }


def sampling_of(sample_section: Mapping[str, Any]) -> dict[str, Any]:
    """The sampling settings (:class:`~sindiffusion.config.SamplingSettings` keys) of a validated
    ``sample`` section as a plain dict: the model's default ``predict`` params."""
    keys = {f.name for f in dataclasses.fields(SamplingSettings)}
    return {k: v for k, v in sample_section.items() if k in keys}


def signature(sampling: Mapping[str, Any]) -> Any:
    """The model's ``ModelSignature``: the input columns (:data:`INPUTS`, all optional), the float
    output ``[N, 3, H, W]``, and the sampling params with ``sampling``'s values as defaults."""
    # why: mlflow is heavy (seconds to import); only a tracked run needs it
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    inputs = Schema([ColSpec("long", name, required=False) for name in INPUTS])
    outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1))])
    specs = [ParamSpec(name, dtype, _param_value(sampling[name], dtype)) for name, dtype in PARAMS.items()]
    specs.append(ParamSpec("output", "string", OUTPUTS[0]))
    return ModelSignature(inputs=inputs, outputs=outputs, params=ParamSchema(specs))


def _param_value(value: Any, dtype: str) -> Any:
    return {"string": str, "long": int, "double": float, "boolean": bool}[dtype](value)


def input_example(size: tuple[int, int] | list[int]) -> dict[str, int]:
    """A runnable request: one sample at the training size ``size`` (H, W), seed 0."""
    return {"height": int(size[0]), "width": int(size[1]), "num": 1, "seed": 0}


def pip_requirements() -> list[str]:
    """What loading the model needs: this package (not on PyPI: install the repository), torch,
    numpy and MLflow, at the versions that wrote it."""

    reqs = []
    for dist in ("sindiffusion", "torch", "numpy", "mlflow"):
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            reqs.append(dist)
            continue
        reqs.append(f"{dist}=={version.split('+')[0]}")
    return reqs


def save_pyfunc(
    path: str | Path, checkpoint: str | Path, info: Mapping[str, Any], sampling: Mapping[str, Any], mlflow_model: Any
) -> None:
    """Write the MLflow model folder ``path``: ``MLmodel`` (this module as the ``python_function``
    loader, the signature, ``info`` as metadata, ``sampling`` as the model config),
    ``data/<checkpoint file>``, the input example and the environment files."""
    # why: mlflow is heavy (seconds to import); only a tracked run needs it
    import mlflow

    mlflow.pyfunc.save_model(
        str(path),
        loader_module=LOADER_MODULE,
        data_path=str(checkpoint),
        signature=signature(sampling),
        input_example=input_example(info["size"]),
        pip_requirements=pip_requirements(),
        metadata={METADATA_KEY: {**info, "outputs": _OUTPUT_DOC}},
        model_config=dict(sampling),
        mlflow_model=mlflow_model,
    )


_OUTPUT_DOC = {
    "float": "[num, 3, height, width] float32 in [-1, 1] (the default)",
    "uint8": "[num, height, width, 3] uint8 RGB images (params={'output': 'uint8'})",
}


# ---------------------------------------------------------------------------- the pyfunc model


class SinDiffusionPyfunc:
    """What ``mlflow.pyfunc.load_model`` returns for a sindiffusion model (through
    :func:`_load_pyfunc`): ``predict`` draws samples (the module docstring says what it takes)."""

    def __init__(self, checkpoint: str | Path, sampling: Mapping[str, Any] | None = None) -> None:
        self.checkpoint = Path(checkpoint)
        self.sampling = dict(sampling or {})
        self._bundles: dict[tuple, Any] = {}
        # a bad checkpoint or config fails at load_model, not at predict; the network itself is built
        # at the first predict, on the device it asks for (a model trained on a GPU loads on a laptop)
        load_checkpoint(self.checkpoint)
        self._settings({}, {})

    def _settings(self, request: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
        """The validated ``sample`` section of one call (errors name the key)."""
        unknown = sorted(set(params) - set(PARAMS) - {"output"})
        if unknown:
            raise ValueError(f"predict params: unknown {unknown}; known: {', '.join([*PARAMS, 'output'])}")
        raw = {
            **self.sampling,
            **{k: v for k, v in params.items() if k in PARAMS},
            **{INPUTS[k]: v for k, v in request.items()},
            **IMAGE_FREE_SAMPLE,  # the start, matching and finish read the training image, not carried here
        }
        raw.setdefault("num_samples", 1)
        return Params(raw={"sample": raw}, path=f"{self.checkpoint.name} predict").section("sample")

    def _load(self, cfg: Any) -> Any:
        # why: MLflow imports this loader module in a bare environment: torch and the model code only when a model loads
        from .generate import load_bundle
        from .runtime import resolve_device

        device = resolve_device(cfg.device)
        key = (str(device), cfg.use_ema, cfg.precision)
        if key not in self._bundles:
            self._bundles[key] = load_bundle(self.checkpoint, device, use_ema=cfg.use_ema, precision=cfg.precision)
        return self._bundles[key]

    def predict(self, model_input: Any, params: Mapping[str, Any] | None = None) -> np.ndarray:
        """Samples for one request (a dict, a one-row DataFrame or a one-item list of dicts)."""
        # why: MLflow imports this loader module in a bare environment: torch and the model code only when a model loads
        import torch

        # why: MLflow imports this loader module in a bare environment: torch and the model code only when a model loads
        from .diffusion import build_sampler
        from .diffusion.x0 import x0_clip_of
        from .generate import generate, output_size

        params = dict(params or {})
        output = params.get("output", OUTPUTS[0])
        if output not in OUTPUTS:
            raise ValueError(f"predict params: output={output!r}; choose one of {', '.join(OUTPUTS)}")
        cfg = self._settings(_request(model_input), params)
        bundle = self._load(cfg)
        size = output_size(bundle.train_size, cfg.height, cfg.width, cfg.scale_h, cfg.scale_w)
        sampler = build_sampler(cfg, bundle.diffusion)
        bundle.check_start(sampler, None, "sample.init=noise")
        with torch.no_grad():
            samples, _ = generate(
                bundle,
                cfg.num_samples,
                size,
                sampler,
                seed=cfg.seed,
                batch_size=cfg.batch_size,
                clip_x0=x0_clip_of(cfg),
            )
        if output == "uint8":  # exactly what the sample stage writes to its PNG files
            return ((samples.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return samples.float().numpy()


def _request(model_input: Any) -> dict[str, int]:
    """The one request of ``model_input``: ``{column: int}`` without the missing/null columns."""
    if hasattr(model_input, "to_dict") and hasattr(model_input, "columns"):  # a pandas DataFrame
        records = model_input.to_dict("records")
    elif isinstance(model_input, Mapping):
        records = [dict(model_input)]
    elif isinstance(model_input, (list, tuple)) and all(isinstance(r, Mapping) for r in model_input):
        records = [dict(r) for r in model_input]
    else:
        raise ValueError(
            f"predict input: expected a mapping like {input_example((64, 64))}, got {type(model_input).__name__}"
        )
    if len(records) != 1:
        raise ValueError(f"predict input: one request per call (a mapping or one row), got {len(records)}")
    out = {}
    for key, value in records[0].items():
        if key not in INPUTS:
            raise ValueError(f"predict input: unknown column {key!r}; known: {', '.join(INPUTS)}")
        if isinstance(value, (list, tuple, np.ndarray)) and len(value) == 1:
            value = value[0]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, (bool, np.bool_)) or not float(value).is_integer():
            raise ValueError(f"predict input: {key} must be an integer, got {value!r}")
        out[key] = int(value)
    return out


def _load_pyfunc(data_path: str, model_config: Mapping[str, Any] | None = None) -> SinDiffusionPyfunc:
    """MLflow's entry point (``loader_module``): ``data_path`` is the model's checkpoint file."""
    return SinDiffusionPyfunc(data_path, model_config)
