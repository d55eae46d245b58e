# sample: random samples at any size from the trained model + grid.png + samples.json.


rule sample:
    input:
        path("checkpoint"),
    output:
        report(
            directory(path("samples")),
            patterns=["{name}.png"],
            caption="../report/samples.rst",
            category="{image}",
            subcategory="Samples",
            labels={"image": "{image}", "figure": "{name}"},
        ),
    params:
        file=PARAMS_FILE,
        settings=stage_settings("sample"),
    log:
        log_path("sample"),
    threads: threads("sample")
    resources:
        gpu=gpus("sample"),
        mem_mb=mem_mb("sample"),
        runtime=runtime("sample"),
        cpus_per_task=threads("sample"),
    conda:
        "../../environment.yml"
    shell:
        stage_command("sample")


TARGETS.extend(expand(path("samples"), image=IMAGES))
