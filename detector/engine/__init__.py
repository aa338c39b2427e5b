"""Training (``trainer``: the loop, ``step``, ``hooks``, ``build``, ``run_folder``) and evaluation
(``evaluator``, ``validate``, ``eval_plots``): import the submodules directly."""
