"""Seeing what a run learnt: traversals (PNG grid + GIF), reconstructions, prior samples, factor responses, training
curves, metric bars, a self-contained HTML report, and optional TensorBoard logging.

    from submission.visualize import write_training_report, write_run_report, TensorBoardLogger
    write_training_report(output_dir, model, dataset)     # end of training; never raises
    python -m submission.visualize --run DIR [--dataset NAME] [--model PATH] [--output DIR]
    python -m submission.visualize --compare DIR1 DIR2 ... [--output DIR]
"""
from .run_report import find_run_files, write_comparison, write_run_report, write_training_report
from .sources import ModelView, VisualizeError, load_model_file
from .tensorboard_logger import TensorBoardHook, TensorBoardLogger

__all__ = ["ModelView", "TensorBoardHook", "TensorBoardLogger", "VisualizeError", "find_run_files", "load_model_file",
           "write_comparison", "write_run_report", "write_training_report"]
