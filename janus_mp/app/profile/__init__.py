"""`janus-mp profile SERVICE`: py-spy samples every worker of a service at once
(:mod:`.sampler`), and the stacks are merged into one flame graph (:mod:`.flame_graph`)."""
