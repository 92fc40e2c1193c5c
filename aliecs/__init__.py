"""aliecs: a Python experiment control system modelled on ALICE's AliECS."""
