"""`numdp lmp`: LAMMPS input scripts (the subset DP-GEN and DP users write) run by numdp run.

numdp.lammps.script reads the language (lines, variables, formulas, if); numdp.lammps.translate
turns the commands into numdp run's tables (docs/lammps-input.md).
"""
