# preprocess: raw image -> processed PNG (longer side <= preprocess.max_size) + JSON.


rule preprocess:
    input:
        source_image,
    output:
        image=path("processed"),
        meta=path("processed_meta"),
    params:
        file=PARAMS_FILE,
        settings=stage_settings("preprocess"),
    log:
        log_path("preprocess"),
    threads: threads("preprocess")
    resources:
        mem_mb=mem_mb("preprocess"),
        runtime=runtime("preprocess"),
        cpus_per_task=threads("preprocess"),
    conda:
        "../../environment.yml"
    shell:
        stage_command("preprocess")
