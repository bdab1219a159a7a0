"""Training in stages (e.g. Adam, then L-BFGS), with metrics, evaluation and checkpoints.

The optimizers are adapters (:mod:`ddpinn.training.optimizers`); the loop has no branch on
which one a stage uses."""
from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch

from ddpinn.io import checkpoint
from ddpinn.io.config_stages import stage_resampler
from ddpinn.io.metrics import MetricsWriter
from ddpinn.parallel.errors import DDPINNError
from ddpinn.training.evaluate import evaluate
from ddpinn.training.optimizers import build_optimizer
from ddpinn.training.precision import convert_solver, dtype_name
from ddpinn.training.resampling import RESAMPLERS, adapted_points
from ddpinn.training.schedules import lr_factor
from ddpinn.training.stage_rules import STEPS, StageRules

log = logging.getLogger("ddpinn")


class Preempted(Exception):
    """All ranks stopped at a step boundary after a signal; a checkpoint was written."""


class Diverged(Exception):
    """The global loss is NaN or Inf (raised identically on every rank)."""


def check_shapes(stacked: dict, shared: dict, model: dict, shared_params: dict) -> None:
    """Raise :class:`DDPINNError` if a checkpoint's parameters do not fit the model.

    ``stacked`` {"param/NAME": Tensor (E, ...)} and ``shared`` from the checkpoint; ``model``
    and ``shared_params`` the named parameters they are copied into."""
    for source, params in ((stacked, model), (shared, shared_params)):
        for n, p in params.items():
            t = source.get(f"param/{n}")
            if t is None or tuple(t.shape) != tuple(p.shape):
                have = "none" if t is None else tuple(t.shape)
                raise DDPINNError(f"the checkpoint does not fit this case's network: parameter "
                                  f"{n!r} has shape {have} in the checkpoint and "
                                  f"{tuple(p.shape)} in the model (network.width, depth or "
                                  f"features differ)")


class Trainer:
    """Runs the stages of a case on one rank's :class:`~ddpinn.training.solver.Solver`.

    Parameters
    ----------
    solver : Solver
    run_dir : Path, where metrics and checkpoints go (rank 0 writes)
    test_grid : TestGrid or None, for errors every ``output.eval_every`` steps
    run_meta : {"run_id", "identity", "identity_fields"} written into every checkpoint
        (:mod:`ddpinn.io.rundir`); pruning and rollbacks use only this run's checkpoints
    quantities : callable or None, collective, () -> {name: float} the same on every rank:
        the quantities of interest, in the metrics rows as ``qoi_<name>`` every
        ``output.eval_every`` steps
    """

    def __init__(self, solver, run_dir, test_grid=None, run_meta=None, quantities=None):
        self.solver, self.cfg, self.comm = solver, solver.cfg, solver.comm
        self.run_dir = run_dir
        self.ckpt_dir = run_dir / "checkpoints"
        self.test_grid = test_grid
        self.quantities = quantities
        self.run_meta = dict(run_meta or {})
        self.global_step = 0  # optimizer steps completed, over all stages
        self.stage_index = 0
        self.stage_step = 0
        self.optimizer = None
        self.metrics = MetricsWriter(run_dir / "metrics.jsonl", self.comm)
        self.last_errors = {}
        self.lr_scale = 1.0  # halved at every divergence rollback
        self.rollbacks = 0
        self.max_rollbacks = 3
        self.stop_signal = 0  # set by a signal handler; acted on at the next step boundary
        self._stop_requested = False  # any rank's stop flag, as of the last step record
        self.rules = None  # StageRules of the current stage
        # The stage's wall clock: [minutes used before this job's part, perf_counter start]
        self._wall = [0.0, time.perf_counter()]
        self.stage_minutes = 0.0  # rank 0's, reduced with the last step record

    # -- optimizers ----------------------------------------------------------------------
    def _make_optimizer(self, stage):
        """Optimizer of ``stage`` (the current one); also switches to its interface conditions."""
        s = self.solver
        s.set_conditions(s.problem.stage_conditions[self.stage_index])
        return build_optimizer(s, stage, stage.lr * self.lr_scale)

    def _enter_stage(self, stage) -> None:
        """Start ``stage`` afresh: its precision (converting the solver), its stopping rules
        and wall clock, then its optimizer (on the converted parameters)."""
        if convert_solver(self.solver, stage.dtype):
            log.info("stage %d computes in %s", self.stage_index, stage.dtype)
        self.rules = StageRules(stage)
        self._set_wall(0.0)
        self.optimizer = self._make_optimizer(stage)

    def _set_wall(self, minutes: float) -> None:
        self._wall = [float(minutes), time.perf_counter()]

    def _wall_minutes(self) -> float:
        """Wall minutes of the current stage on this rank's clock, restarts included."""
        return self._wall[0] + (time.perf_counter() - self._wall[1]) / 60.0

    # -- checkpoints ---------------------------------------------------------------------
    def _named_model(self):
        return dict(self.solver.model.named_parameters())

    def state(self):
        """(experts, shared, scalars) for :func:`checkpoint.save`."""
        s, opt = self.solver, self.optimizer
        dist = {f"param/{n}": p for n, p in self._named_model().items()}
        shared = {f"param/{n}": p for n, p in s.shared.items()}
        scalars = {}
        if opt is not None:
            od, osh, osc = opt.state(self._named_model(), dict(s.shared))
            dist.update(od)
            shared.update(osh)
            scalars.update(osc)
        if adapted_points(self.cfg):  # adapted points are state, not a function of the epoch
            dist["points/interior"] = s.interior_points()
        if s.causal is not None:
            scalars.update(s.causal.state())
        # One replica per group writes the group's experts (the records are keyed by sid).
        experts = checkpoint.pack(dist, s.sids) if s.layout.replica == 0 else None
        scalars.update(global_step=self.global_step, stage_index=self.stage_index,
                       stage_step=self.stage_step, epoch=s.epoch, lr_scale=self.lr_scale,
                       dtype=dtype_name(s.dtype), stage_minutes=self._wall_minutes())
        if self.rules is not None:
            scalars.update(self.rules.state())
        return experts, shared, scalars

    def save_checkpoint(self):
        """Collective."""
        t0 = time.perf_counter()
        experts, shared, scalars = self.state()
        meta = {"case": self.cfg.case.name, "grid": list(self.solver.decomposition.grid),
                "edges": [np.asarray(e).tolist() for e in self.solver.decomposition.edges],
                "n_subdomains": self.solver.decomposition.n_subdomains,
                "pde": self.cfg.pde.name, "ranks": self.comm.size,
                "replicas": self.solver.layout.replicas, **self.run_meta}
        path = checkpoint.checkpoint_path(self.ckpt_dir, self.global_step)
        checkpoint.save(path, self.comm, experts, shared, scalars, meta,
                        keep=self.cfg.output.keep_checkpoints)
        log.info("checkpoint %s (%.2f s)", path.name, time.perf_counter() - t0)

    def restore(self, state: dict):
        """Load a checkpoint written on any rank count (state from :func:`checkpoint.load`)."""
        s = self.solver
        meta, sc = state["meta"], state["scalars"]
        if meta["n_subdomains"] != s.decomposition.n_subdomains or \
                list(meta["grid"]) != list(s.decomposition.grid):
            raise DDPINNError(f"checkpoint has grid {meta['grid']} but the case has "
                              f"{list(s.decomposition.grid)}: it belongs to another decomposition")
        edges = meta.get("edges")  # absent in checkpoints of uniform grids written before
        if edges is not None and not all(
                np.array_equal(np.asarray(a), np.asarray(b))
                for a, b in zip(edges, s.decomposition.edges)):
            raise DDPINNError(f"checkpoint has the cell edges {edges} but the case has "
                              f"{[np.asarray(e).tolist() for e in s.decomposition.edges]}: it "
                              f"belongs to another decomposition (decomposition.cuts)")
        shared = state["shared"]
        stacked = checkpoint.gather_sids(state, s.sids)
        # The precision of the checkpoint's stage (older checkpoints: that stage's setting).
        stages = self.cfg.stages
        fallback = stages[min(sc["stage_index"], len(stages) - 1)].dtype if stages else None
        convert_solver(s, sc.get("dtype") or fallback or self.cfg.case.dtype)
        check_shapes(stacked, shared, self._named_model(), dict(s.shared))
        with torch.no_grad():
            for n, p in self._named_model().items():
                p.copy_(stacked[f"param/{n}"])
            for n, p in s.shared.items():
                p.copy_(shared[f"param/{n}"])
        self.global_step, self.stage_index = sc["global_step"], sc["stage_index"]
        self.stage_step = sc["stage_step"]
        self.lr_scale = min(self.lr_scale, sc.get("lr_scale", 1.0))
        s.resample(sc["epoch"])
        if "points/interior" in stacked:
            s.set_interior(stacked["points/interior"])
        if s.causal is not None:
            s.causal.load_state(sc)
        if self.stage_index >= len(self.cfg.stages):
            return
        stage = self.cfg.stages[self.stage_index]
        self.rules = StageRules(stage)
        self.rules.load_state(sc)
        self._set_wall(sc.get("stage_minutes", 0.0))
        self.optimizer = self._make_optimizer(stage)
        self.optimizer.load_state(stacked, shared, sc, self._named_model(), dict(s.shared))
        self.metrics.truncate(self.global_step)

    def _own_checkpoints(self, before: int) -> list:
        """This run's checkpoints (by run id) of steps below ``before``, oldest first."""
        run_id = self.run_meta.get("run_id")
        return [p for p in checkpoint.list_checkpoints(self.ckpt_dir)
                if checkpoint.step_of(p) < before
                and (run_id is None or checkpoint.run_id_of(p) == run_id)]

    def finished_note(self) -> str | None:
        """After :meth:`restore`: why a resume will not train, or None when it will.

        A checkpoint written after the last stage ended (all its steps run, or a rule fired)
        holds no stage to go on with; raising that stage's ``steps`` or ``max_minutes`` does
        not reopen it. The note names the newest checkpoint of this run written inside a stage."""
        last = len(self.cfg.stages) - 1
        if self.stage_index < last or (self.stage_index == last and not self.rules.ended_by
                                       and self.stage_step < self.cfg.stages[last].steps):
            return None
        inside = self._own_checkpoints(self.global_step)
        hint = (f"resume from a checkpoint written inside a stage (newest: --resume "
                f"{inside[-1]}) with a larger steps or max_minutes, or add a [[stages]] table"
                if inside else "add a [[stages]] table")
        return (f"the checkpoint at step {self.global_step} was written after the last of the "
                f"{len(self.cfg.stages)} stages ended: nothing is left to train, the run only "
                f"evaluates and rewrites its outputs; to train on, {hint}")

    # -- the loop ------------------------------------------------------------------------
    def _maybe_resample(self, stage):
        name = stage_resampler(self.cfg, stage)
        if name and RESAMPLERS[name](self.solver, self.global_step,
                                     self.cfg.points.resample_every):
            self.optimizer.objective_changed()

    def _rollback(self, loss) -> None:
        """Collective. Back to the newest readable checkpoint with half the learning rate,
        or a clear error when there is none or the retries are spent."""
        where = f"the loss became {loss} at step {self.global_step} (stage {self.stage_index})"
        found = self._own_checkpoints(self.global_step + 1) \
            if self.cfg.output.checkpoint_every else []
        if self.rollbacks >= self.max_rollbacks:
            raise DDPINNError(f"{where}, still diverging after {self.rollbacks} rollbacks with "
                              f"the learning rate down to {self.lr_scale:g}x; stopping")
        if not found:
            raise DDPINNError(f"{where} and there is no checkpoint to roll back to "
                              f"(set output.checkpoint_every); lower the learning rate")
        state, path = checkpoint.load_newest(found)
        self.rollbacks += 1
        self.lr_scale *= 0.5
        stage, minutes = self.stage_index, self._wall_minutes()
        self.restore(state)
        if self.stage_index == stage:  # wall time spent since the checkpoint still counts
            self._set_wall(minutes)
        log.warning("%s: rolled back to %s with learning rate x%g (rollback %d of %d)",
                    where, path.name, self.lr_scale, self.rollbacks, self.max_rollbacks)

    def _step_times(self, step_seconds: float) -> dict:
        """Collective. The step's wall time and its split, each the mean over ranks (s).

        ``time_compute`` is forward, derivatives, loss and backward; ``time_exchange`` the
        wait for the interface values of other ranks; ``time_allreduce`` the shared-gradient,
        metric and L-BFGS reductions. The rest of ``time_step`` is the L-BFGS vector algebra.
        Adam's update follows the record and is not included. Never part of the loss.
        """
        t = self.comm.times.seconds
        # The stop flag and rank 0's stage minutes ride along: one collective per step serves
        # all, and every rank takes the same stopping decisions.
        minutes = self._wall_minutes() if self.comm.rank == 0 else 0.0
        local = np.array([step_seconds, t["compute"], t["exchange"], t["allreduce"],
                          float(self.stop_signal != 0), minutes])
        total = self.comm.allreduce(local)
        self._stop_requested = bool(total[4] > 0)
        self.stage_minutes = float(total[5])
        mean = total[:4] / self.comm.size
        return dict(zip(("time_step", "time_compute", "time_exchange", "time_allreduce"),
                        (float(v) for v in mean)))

    def _stage_bound(self) -> int:
        """Steps the current stage will run: ``steps``, or up to this one once a rule fired."""
        if self.rules is not None and self.rules.ended_by:
            return self.stage_step + 1
        return self.cfg.stages[self.stage_index].steps

    def _planned_steps(self) -> int:
        """Steps of the run as now planned: those before this stage, this stage's and every
        step of the later ones (no step of a stage that ended early is claimed)."""
        later = sum(st.steps for st in self.cfg.stages[self.stage_index + 1:])
        return self.global_step - self.stage_step + self._stage_bound() + later

    def _apply_rules(self, stage, loss: float, row: dict) -> None:
        """After the step's reduction: the stopping rules, on values every rank has alike.
        The stage's last row says what ended it (``stage_end``: a rule's name or "steps")."""
        ended = self.rules.after_step(loss, self.stage_minutes)
        if not ended and self.stage_step + 1 >= stage.steps:
            ended = STEPS
        if ended:
            row["stage_end"] = ended
            log.info("stage %d [%s] ended by %s at step %d (loss %.4e, %d of %d steps, "
                     "%.2f min)", self.stage_index, stage.optimizer, ended, self.global_step,
                     loss, self.stage_step + 1, stage.steps, self.stage_minutes)

    def _record(self, stage, loss, metrics, t_start, done_at_start, step_seconds):
        if not math.isfinite(loss):
            raise Diverged(loss)
        out = self.cfg.output
        row = {"step": self.global_step, "stage": self.stage_index, **metrics,
               **self._step_times(step_seconds)}
        self._apply_rules(stage, loss, row)
        total_steps = self._planned_steps()  # after the rules (an ended stage's rest goes)
        fresh = False
        if out.eval_every and self.test_grid is not None and self.test_grid.truth is not None \
                and self.global_step % out.eval_every == 0:
            _, self.last_errors = evaluate(self.solver, self.test_grid)
            self.last_eval_step, fresh = self.global_step, True
            row.update(self.last_errors)
        if out.eval_every and self.quantities is not None and \
                self.global_step % out.eval_every == 0:
            row.update({f"qoi_{k}": v for k, v in self.quantities().items()})
        self.metrics.write(row)
        now = time.perf_counter()
        eta = self._eta(now, step_seconds, total_steps)
        if self.comm.rank == 0 and out.progress and out.log_every and \
                self.global_step % out.log_every == 0:
            errs = " ".join(f"{k} {v:.3e}" for k, v in self.last_errors.items())
            if errs and not fresh:  # errors of an earlier step: say which
                errs += f" @step {self.__dict__.get('last_eval_step')}"
            log.info("step %d/%d [%s] loss %.4e res %.3e bc %.3e mismatch %.2e %seta %s",
                     self.global_step, total_steps, stage.optimizer, loss,
                     metrics["residual"], metrics["boundary"],
                     metrics["mismatch_space"] + metrics["mismatch_time"],
                     errs + " " if errs else "",
                     time.strftime("%H:%M:%S", time.gmtime(max(eta, 0))))

    def _eta(self, now: float, step_seconds: float, total_steps: int) -> float:
        """Seconds left: the rest of this stage at this stage's own measured step rate (wall
        time per step since its first step in this job, evaluations and checkpoints
        included), later stages at their rate where measured (after a rollback), else at
        this stage's. An L-BFGS step costs many evaluations: it is never timed by Adam's."""
        rates = self.__dict__.setdefault("_stage_rates", {})
        clock = self.__dict__.get("_stage_clock")
        if clock is None or clock[0] != self.stage_index:
            # the stage's first step began step_seconds ago (its Adam update comes after)
            clock = self._stage_clock = [self.stage_index, now - step_seconds, 0]
        clock[2] += 1
        rate = (now - clock[1]) / clock[2]
        rates[self.stage_index] = rate
        stages = self.cfg.stages
        left = (self._stage_bound() - self.stage_step - 1) * rate
        for i in range(self.stage_index + 1, len(stages)):
            left += stages[i].steps * rates.get(i, rate)
        return left

    def request_stop(self, signum, frame=None) -> None:
        """Signal handler: stop at the next step boundary with a checkpoint."""
        self.stop_signal = signum

    def _check_stop(self) -> None:
        """If any rank had a stop signal at the step's record (the flag is reduced with the step
        times, so every rank decides alike), all checkpoint and raise Preempted."""
        if self._stop_requested:
            log.warning("stop signal received: checkpointing at step %d", self.global_step)
            self.save_checkpoint()
            raise Preempted(self.global_step)

    def train(self):
        """Collective. Run all remaining stages (rolling back on divergence)."""
        while True:
            try:
                return self._train_stages()
            except Diverged as exc:
                self._rollback(exc.args[0])

    def _train_stages(self):
        stages = self.cfg.stages
        every = self.cfg.output.checkpoint_every
        t_start, done_at_start = time.perf_counter(), self.global_step
        while self.stage_index < len(stages):
            stage = stages[self.stage_index]
            if self.optimizer is None:
                self._enter_stage(stage)
            opt = self.optimizer
            self.solver.use_causal = stage.causal
            while self.stage_step < stage.steps and not self.rules.ended_by:
                self._maybe_resample(stage)
                self.comm.times.reset()
                t_step = time.perf_counter()
                # New causal weights are a new objective (L-BFGS drops its last line search).
                if self.solver.closure.begin_step():
                    opt.objective_changed()
                opt.set_lr(stage.lr * self.lr_scale * lr_factor(stage, self.stage_step))

                def record(loss, metrics):
                    self._record(stage, loss, metrics, t_start, done_at_start,
                                 time.perf_counter() - t_step)

                opt.step(self.solver.closure, record)
                self.global_step += 1
                self.stage_step += 1
                if every and self.global_step % every == 0:
                    self.save_checkpoint()
                self._check_stop()
            self.stage_index += 1
            self.stage_step = 0
            self.optimizer = None
        return self.last_errors
