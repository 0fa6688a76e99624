"""The parts of ``vccflow receive``: signature checks (:mod:`.signature`), where accepted
notifications go (:mod:`.sinks`) and the HTTP application (:mod:`.app`)."""
