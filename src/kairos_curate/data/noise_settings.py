"""The grammar of noise settings: how a pool variant of the method comparison is named.

``default`` (the prepared pool), ``gaussian_<std>`` (std in units of the clean pool's pixel std),
``motion_blur_<length px>``, ``sensor_noise_<photons at full scale>``, ``flip_uniform_<pct>``,
``flip_confusable_<pct>``, ``off_task`` and ``mix``. :func:`parse_setting` is the only reader of
these names; everything downstream uses the parsed :class:`SettingSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SettingSpec", "parse_setting"]


@dataclass(frozen=True)
class SettingSpec:
    """A parsed noise-setting name.

    Attributes
    ----------
    name : str
        As written in ``params.yaml`` (e.g. ``"gaussian_3"``, ``"flip_confusable_20"``).
    family : str
        ``default``, ``gaussian``, ``motion_blur``, ``sensor_noise``, ``flip``, ``off_task``, ``mix``.
    level : float
        Severity (gaussian, in clean-pool pixel stds), blur length (pixels), photons at full
        scale (sensor noise) or flip percentage; 0 when unused.
    mode : str
        ``uniform`` / ``confusable`` for flips, else ``""``.
    """

    name: str
    family: str
    level: float = 0.0
    mode: str = ""


def parse_setting(name: str) -> SettingSpec:
    """Parse a setting name.

    Known forms: ``default``, ``gaussian_<severity>``, ``motion_blur_<length>``,
    ``sensor_noise_<photons>``, ``flip_uniform_<percent>``, ``flip_confusable_<percent>``,
    ``off_task``, ``mix``.
    """
    text = str(name).strip()
    try:
        if text in ("default", "off_task", "mix"):
            return SettingSpec(text, text)
        if text.startswith("gaussian_"):
            return SettingSpec(text, "gaussian", float(text.removeprefix("gaussian_")))
        if text.startswith("motion_blur_"):
            return SettingSpec(text, "motion_blur", float(int(text.removeprefix("motion_blur_"))))
        if text.startswith("sensor_noise_"):
            return SettingSpec(text, "sensor_noise", float(text.removeprefix("sensor_noise_")))
        for mode in ("uniform", "confusable"):
            if text.startswith(f"flip_{mode}_"):
                pct = float(text.removeprefix(f"flip_{mode}_"))
                if not 0 < pct < 100:
                    raise ValueError
                return SettingSpec(text, "flip", pct, mode)
    except ValueError:
        pass
    raise ValueError(
        f"compare.settings: cannot read {text!r}; use default, gaussian_<std>, "
        "motion_blur_<length>, sensor_noise_<photons>, flip_uniform_<pct>, "
        "flip_confusable_<pct>, off_task or mix"
    )
