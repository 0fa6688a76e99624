"""The parts of ``vccflow generate`` (the command is :mod:`pipelines.generate`).

- :mod:`.times`: time units and the ISO-8601 forms VCC sends and the truth uses.
- :mod:`.config`: the generator's options.
- :mod:`.plan`: what the simulation lays out: channels (events and state segments built
  together), work items, agents with presence and login sessions.
- :mod:`.contacts`: every kind of contact, laid out from time 0 as work items.
- :mod:`.scenarios`: the simulation: agents working shifts, the work items they handle
  (placed in ready periods, other agents found for transfers and consults).
- :mod:`.notifications`: the plan's events as CloudEvents notification lines.
- :mod:`.delivery`: how webhooks deliver them: duplicates, disorder, late re-deliveries,
  garbage and blank lines, split into files.
- :mod:`.truth`: the rows a correct pipeline must produce, from the plan.
"""
