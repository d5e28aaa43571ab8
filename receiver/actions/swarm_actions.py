"""Actions only a service backend (Swarm) can take: scale within bounds, roll back."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from receiver.actions.registry import ActionContext, ActionFailed
from receiver.executor import ServiceExecutor

__all__ = ["RollbackParams", "ScaleParams", "rollback_service", "scale_service"]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScaleParams(_Params):
    replicas: int = Field(ge=0, description="The replica count to set.")
    min_replicas: int = Field(1, ge=0, description="Refuse to scale below this.")
    max_replicas: int = Field(ge=1, le=1000, description="Refuse to scale above this.")

    @model_validator(mode="after")
    def _within_bounds(self) -> ScaleParams:
        # Checked when the playbook loads: an out-of-bounds scale never reaches a run.
        if not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError(f"replicas {self.replicas} is outside [min_replicas "
                             f"{self.min_replicas}, max_replicas {self.max_replicas}]")
        return self


class RollbackParams(_Params):
    pass


def _service_backend(ctx: ActionContext) -> ServiceExecutor:
    if not isinstance(ctx.executor, ServiceExecutor):  # playbook load refuses this already
        raise ActionFailed("unsupported", f"the {ctx.executor.backend} backend has no services")
    return ctx.executor


def scale_service(ctx: ActionContext, params: ScaleParams) -> str | None:
    """Set a replicated service's replica count, within the playbook's bounds."""
    return _service_backend(ctx).scale(ctx.target, params.replicas)


def rollback_service(ctx: ActionContext, params: RollbackParams) -> str | None:
    """Roll the service back to its previous spec (refused when it has none)."""
    return _service_backend(ctx).rollback(ctx.target)
