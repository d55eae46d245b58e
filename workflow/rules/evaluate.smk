# evaluate: metrics of each image's samples (SIFID/LPIPS when verified weights exist, weight-free always).


rule evaluate:
    input:
        image=path("processed"),
        samples=path("samples"),
    output:
        report(
            path("eval_metrics"),
            caption="../report/eval_metrics.rst",
            category="{image}",
            subcategory="Evaluation",
            labels={"image": "{image}", "figure": "evaluation metrics"},
        ),
    params:
        file=PARAMS_FILE,
        settings=stage_settings("evaluate"),
    log:
        log_path("evaluate"),
    threads: threads("evaluate")
    resources:
        gpu=gpus("evaluate"),
        mem_mb=mem_mb("evaluate"),
        runtime=runtime("evaluate"),
        cpus_per_task=threads("evaluate"),
    conda:
        "../../environment.yml"
    shell:
        stage_command("evaluate")


TARGETS.extend(expand(path("eval_metrics"), image=IMAGES))
