"""``otalab feel-privacy``: accuracy vs (epsilon, delta) for A-DSGD and D-DSGD (lab.experiments.feel_privacy)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lab.cli.common import JsonOpt, ProgressOpt, SeedOpt, emit_json, fail, out_option


def register(app: typer.Typer) -> None:
    """Add ``otalab feel-privacy``."""

    @app.command("feel-privacy")
    def feel_privacy_cmd(
        epsilon: str = typer.Option("10,100,1000,none", help="comma list of target epsilons ('none': no added "
                                                              "noise: what the channel alone gives)"),
        scheme: str = typer.Option("analog,digital", help="comma list of analog (A-DSGD), digital (D-DSGD)"),
        rounds: int = typer.Option(50, help="rounds per run (the target is met after these)"),
        clip: float = typer.Option(1.0, help="L2 clip C of each device's update"),
        delta: float = typer.Option(1e-5, help="delta of (epsilon, delta)"),
        power: float = typer.Option(200.0, help="P-bar, energy per device per round"),
        devices: int = typer.Option(25, help="devices M"),
        samples_per_device: int = typer.Option(1000, help="local data set size B"),
        data_dir: Optional[Path] = typer.Option(None, help="data directory (else OTALAB_DATA_DIR, ../shared/data)"),
        seed: SeedOpt = 0,
        json_path: JsonOpt = None,
        out: out_option("runs/feel-privacy") = Path("runs/feel-privacy"),
        progress: ProgressOpt = True,
    ):
        """Accuracy vs privacy of over-the-air and digital FEEL on MNIST: JSON and a PNG."""
        from lab.experiments.feel_privacy import plot_privacy, privacy_sweep
        from lab.results import metadata, write_json
        try:
            targets = [None if v.strip().lower() in ("none", "inf") else float(v) for v in epsilon.split(",")]
        except ValueError:
            fail(f"--epsilon {epsilon!r}: expected a comma list of numbers or 'none'")
        schemes = [s.strip() for s in scheme.split(",") if s.strip()]
        bad = sorted(set(schemes) - {"analog", "digital", "ideal"})
        if bad:
            fail(f"--scheme {','.join(bad)}: expected analog, digital or ideal")
        import torch
        torch.set_num_threads(1)

        def tick(rec):
            if progress:
                eps = "inf" if rec["epsilon"] is None else f"{rec['epsilon']:.3g}"
                typer.echo(f"{rec['scheme']:8s} target {rec['target_epsilon']}: epsilon {eps}, "
                           f"accuracy {rec['final_accuracy']:.4f}", err=True)
        try:
            result = privacy_sweep(targets, schemes, rounds, clip, delta, seed, data_dir,
                                   base={"power": power, "devices": devices, "samples_per_device": samples_per_device},
                                   on_run=tick)
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        result = {**metadata(seed=seed), **result}
        out.mkdir(parents=True, exist_ok=True)
        png = plot_privacy(result, out / "feel_privacy.png")
        write_json(out / "feel_privacy.json", result)
        emit_json(json_path, result)
        for r in result["results"]:
            eps = "inf" if r["epsilon"] is None else f"{r['epsilon']:.4g}"
            typer.echo(f"| {r['scheme']} | {r['target_epsilon']} | {eps} | {r['final_accuracy']:.4f} |")
        typer.echo(f"wrote {out / 'feel_privacy.json'}")
        typer.echo(f"wrote {png}")
