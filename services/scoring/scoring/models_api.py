"""The model registry over HTTP: list, upload, promote, roll back, retrain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError

from leadpact.apikeys import require_scope
from leadpact.service import ServiceContext
from scoring import store
from scoring.model.calibrated import CalibratedModel
from scoring.predictor import ModelPredictor, model_of
from scoring.retraining import Retrainer


class ModelView(BaseModel):
    version: str
    status: str
    origin: str
    created_at: datetime
    promoted_at: datetime | None
    training_from: datetime | None
    training_to: datetime | None
    feature_schema: list[dict[str, Any]]
    metrics: dict[str, Any]


class ModelUpload(BaseModel):
    """A directory written by ``scoring train``: model.json as ``manifest``, booster.txt as
    ``booster``."""

    manifest: dict[str, Any]
    booster: str = Field(min_length=1)


def _raced() -> HTTPException:
    return HTTPException(
        status.HTTP_409_CONFLICT, "champion: changed by a concurrent promotion; try again"
    )


def _view(row: store.ModelRow) -> ModelView:
    return ModelView.model_validate(row, from_attributes=True)


def build_models_router(ctx: ServiceContext, retrainer: Retrainer) -> APIRouter:
    router = APIRouter(prefix="/v1/models", tags=["models"])
    # Reading the registry is harmless; changing which model scores leads is not.
    read = [Depends(require_scope(ctx.settings, "models:read"))]
    admin = [Depends(require_scope(ctx.settings, "models:admin"))]

    @router.get("", response_model=list[ModelView], dependencies=read)
    async def list_models() -> list[ModelView]:
        """Every model, newest first; at most one has status ``champion``."""
        async with ctx.db.session() as session:
            return [_view(r) for r in await store.models(session)]

    @router.post(
        "", response_model=ModelView, status_code=status.HTTP_201_CREATED, dependencies=admin
    )
    async def upload(body: ModelUpload) -> ModelView:
        """Register a model trained offline (``scoring train``) as a challenger."""
        try:
            model = CalibratedModel.from_parts(body.manifest, body.booster)
        except (KeyError, TypeError, ValueError) as exc:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"manifest/booster: not a model: {exc}"
            ) from exc
        except Exception as exc:  # LightGBM raises its own error type for a bad booster
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"booster: not a LightGBM model: {exc}"
            ) from exc
        async with ctx.db.session() as session:
            if await session.get(store.ModelRow, model.version) is not None:
                raise HTTPException(
                    status.HTTP_409_CONFLICT, f"manifest.version: {model.version!r} exists"
                )
            row = store.ModelRow(
                version=model.version,
                status="challenger",
                origin="upload",
                created_at=ctx.clock.now(),
                feature_schema=model.schema.to_json(),
                metrics=model.metrics,
                manifest=model.manifest(),
                booster=body.booster,
            )
            session.add(row)
            await session.commit()
            return _view(row)

    @router.post("/{version}/promote", response_model=ModelView, dependencies=admin)
    async def promote(version: str) -> ModelView:
        """Make this model the champion (the one live scoring uses)."""
        async with ctx.db.session() as session:
            row = await session.get(store.ModelRow, version)
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"version: no model {version!r}")
            try:
                await store.promote(session, row, ctx.clock.now())
                await session.commit()
            except IntegrityError as exc:
                raise _raced() from exc
            retrainer.scoring.predictor = ModelPredictor(model_of(row))
            return _view(row)

    @router.post("/rollback", response_model=ModelView, dependencies=admin)
    async def rollback() -> ModelView:
        """Retire the champion and bring back the one promoted before it."""
        async with ctx.db.session() as session:
            current = await store.champion(session)
            if current is None:
                raise HTTPException(status.HTTP_409_CONFLICT, "champion: there is none")
            previous = await store.previous_champion(session, current)
            if previous is None:
                raise HTTPException(status.HTTP_409_CONFLICT, "champion: nothing before it")
            # Out of the promotion chain, so a second rollback goes further back.
            current.status, current.promoted_at = "retired", None
            await session.flush()
            previous.status = "champion"
            try:
                await session.commit()
            except IntegrityError as exc:
                raise _raced() from exc
            retrainer.scoring.predictor = ModelPredictor(model_of(previous))
            return _view(previous)

    @router.post("/retrain", response_model=ModelView | None, dependencies=admin)
    async def retrain() -> ModelView | None:
        """Train a challenger now (promoted only if better); null when too few labels."""
        row = await retrainer.retrain()
        return None if row is None else _view(row)

    return router
