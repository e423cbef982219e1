"""The optimizer: each machine's real curves, savings-optimal setpoints, and (in control mode) the writes.

By data flow, one job per module:

=====================  ========================================================================
``loop``               ``Optimizer``: the cycle task, the per-poll hook, ``snapshot()`` for readers
``group``              ``GroupRuntime``: one group's demand, operating point, plan and publishing
``datasheet``          the datasheet curves through the rated point (the prior)
``machine``            one pump or fan: the prior, the fits, the curves in use, motor and drive losses
``system``             the system curve, refined by starved operating points
``demand``             the demand's level and trend
``staging``            parallel pumps: how many run, which, how fast (``Stager.plan``)
``counterfactual``     the operator's strategy on the same curves: the optimizer's savings basis
``plans``              the typed plans (``SpeedPlan``, ``StagingPlan``, ``SetpointPlan``)
=====================  ========================================================================

``agent.control.actuator`` writes a plan in control mode. The package itself imports
nothing, so ``agent.energy.baseline`` can use ``datasheet`` without loading the optimizer;
import from the modules.
"""
