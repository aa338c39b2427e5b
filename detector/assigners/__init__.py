"""Label assigners: which priors are positives for which ground-truth box (registered in ASSIGNERS)."""

from detector.assigners.simota import SimOTAAssigner, SimOTAResult, assign_simota

__all__ = ["SimOTAAssigner", "SimOTAResult", "assign_simota"]
