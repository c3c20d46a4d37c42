"""Lightning plug-ins, one module per conf/callbacks/ and conf/logger/ entry that lora_lab provides
(imports nothing itself: each module loads Lightning when a job instantiates it).

resource_monitor.py  callbacks.resource_monitor: ResourceMonitor (time, throughput, latency, memory)
resume_state.py      callbacks.resume_state: ResumeState (sampler position + RNG states in checkpoints)
ema.py               callbacks=ema: EMA (an exponential moving average of the weights)
mlflow.py            logger=mlflow: MLFlowLogger (a local SQLite store that just works)
"""
