"""Errors that fscnn-tvm raises for bad input. Each message names the file/layer/shape at fault."""
from __future__ import annotations


class ModelLoadError(ValueError):
    """A model file is missing, corrupt or of an unknown format."""


class UnsupportedOperatorError(NotImplementedError):
    """The model uses operators the importer cannot convert; lists all of them at once."""

    def __init__(self, source: str, ops: list[str]):
        self.source = source
        self.ops = list(ops)
        super().__init__(f"{source}: {len(self.ops)} unsupported operator(s): {', '.join(self.ops)}")


class ImporterError(NotImplementedError):
    """TVM's importer failed on one node of the model; names the op, the node and the layer."""


class InputError(ValueError):
    """An input array does not match what the compiled model expects."""


class ProfileError(ValueError):
    """A performance profile that cannot be used (missing, corrupt, or for another target)."""


class ProfileWarning(UserWarning):
    """No calibrated performance profile for the target: the built-in conservative one is used."""


class TuningLogError(ValueError):
    """A tuning log that cannot be used (missing, corrupt, or for another target)."""


class TuningLogWarning(UserWarning):
    """A tuning log that is ignored or repaired (another TVM version, a record cut short)."""


class VerificationError(ValueError):
    """``compile(..., verify=True)``: the compiled model differs from its source beyond the tolerance."""
