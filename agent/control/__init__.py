"""Control: the only way the agent changes a drive.

==============  ==========================================================================
``writer``      ``DriveWriter``: guard rails, write and read-back, counting, the hand-back
``actuator``    ``GroupActuator``: which writes a group's plan needs, in which order
==============  ==========================================================================

The package imports nothing itself; import from the modules.
"""
