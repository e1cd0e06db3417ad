"""The measured study: a plain library (no Kedro) that the evaluate pipeline wires.

    settings = StudySettings.parse(params["evaluate"])
    cells = expand_cells(variant_rows, settings)          # model x variant x target x batch x device
    runner = StudyRunner(settings, variant_rows, study_deployers(settings, params["deploy"]),
                         evaluation_set_of, StudyStore(folder), tracker)
    outcome = runner.run(cells)                            # pending cells only: resumable

Modules: ``study`` (settings, cells, configuration hashes), ``repetitions`` (Student's t interval,
adaptive repetitions), ``accuracy`` (the seeded item subset, metric intervals, the key that
shares an accuracy pass between targets, batch sizes and studies), ``harness`` (warm-up, accuracy pass, one cell through a ``Deployer``),
``runner`` (order, deployments, store, MLflow), ``store`` (one JSON file per cell, atomic),
``tracking`` (MLflow parent and nested runs), ``summary`` (the one-screen table).
"""
