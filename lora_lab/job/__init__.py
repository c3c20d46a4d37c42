"""One job's lifecycle (imports nothing itself: dir.py and record.py are light, build.py loads torch).

dir.py           JobDir: a job dir's files (metrics, labels, config, status, provenance) as every reader sees them
record.py        JobRecord: status.json (running -> complete | pruned | failed | duplicate), the effective
                 config's fingerprint, the duplicate check in a multirun
provenance.py    provenance.json: code commit, library versions, data files' sha256, command
build.py         build_job(cfg) -> BuiltJob: one instantiate() per config group; load_trained(job dir)
checkpointing.py atomic checkpoints and the checkpoint resume=true continues from
outputs.py       metrics.json's content and the artifacts a finished job leaves behind
plots.py         the figures written into job and eval dirs
stacking.py      the tested model + TF-IDF, the weight picked on validation (stack=tfidf)
latency.py       latency/p50_ms, p95_ms: the shipped model answering test texts one at a time
allocator.py     glibc's mmap threshold fixed for a job (freed tensors leave the RSS); malloc_trim
"""
