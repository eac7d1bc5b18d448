"""engine: spikes and blur in, sharp frames out: TFP, SDM, the LDN, its weights and backends.

No sockets or files except weights: the engine node is a loop around :func:`make_deblurrer` and
``Deblurrer.sequence``. ``import spikereveal.engine`` does not load torch; a name imports its
module on first use (``LDN`` and the weight loaders load torch, ``sdm_sequence`` does not).
The functions ``sdm`` and ``tfp`` share their modules' names: import them from those modules.
"""

from __future__ import annotations

from spikereveal.stream.exports import lazy_exports

_EXPORTS = {
    "spikereveal.engine.backends": ("Backend", "BackendError", "create_backend"),
    "spikereveal.engine.deblur": ("Deblurrer", "MODELS", "make_deblurrer", "to_uint8"),
    "spikereveal.engine.bsn": ("BSN", "BSN_PARAMETERS"),
    "spikereveal.engine.ldn": ("LDN",),
    "spikereveal.engine.sdm": ("sdm_sequence",),
    "spikereveal.engine.sr": ("EDSR", "EDSR_PARAMETERS"),
    "spikereveal.engine.teacher": ("CascadeTeacher", "TeacherError", "sdm_teacher"),
    "spikereveal.engine.tfp": ("tfp_range",),
    "spikereveal.engine.weights": (
        "ARCHITECTURES",
        "DEFAULT_LDN_WEIGHTS",
        "WeightsError",
        "load_ldn_state",
        "load_net",
        "read_metadata",
        "resolve_weights",
        "save_ldn_state",
        "save_net",
    ),
    "spikereveal.engine.windows": ("ExposureError", "default_exposure", "exposure_times", "ldn_inputs"),
}
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
