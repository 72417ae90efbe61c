"""Monitoring: alarms on failed, stuck and lost jobs and on Lambda errors, a dashboard, an SNS topic.

Alarms (each at >= 1 in its period, missing data not breaching):

* ``JobsFailed``: jobs that became FAILED (metric vtp/JobsFailed, emitted by the failure
  function on every path: a refused input, a caught workflow error, a stopped, timed-out
  or failed execution);
* ``DeadLetters``: messages in the dead-letter queue (uploads whose splitter deliveries all
  failed, failure-path events that could not be delivered): work that needs a redrive;
* ``JobsOverdue``: jobs RUNNING longer than the OverdueJobMinutes parameter (metric
  vtp/JobsOverdue, emitted every 10 minutes by the watchdog);
* ``ExecutionsFailed``, ``ExecutionsTimedOut``: the state machine's own metrics;
* ``<Function>Errors``: each Lambda's errors (retried ones included).

Idle cost: each standard alarm is billed (about USD 0.10 a month: 10 alarms here);
the dashboard is free within the account's first three; the topic costs nothing
unless messages flow. Everything else in the stack bills only while a video is
processed.

Alarms go to the ``AlarmTopic`` SNS topic; set context ``vtp:alarm-email`` to
subscribe an address (it must confirm the subscription).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

import infra  # noqa: F401  (functions/ on sys.path)
from vtp import contract


PERIOD = Duration.minutes(5)
WATCHDOG_PERIOD = Duration.minutes(10)


def pipeline_metric(name: str, statistic: str = "Sum", period: Duration = PERIOD) -> cloudwatch.Metric:
    """A metric the functions emit (powertools EMF: namespace vtp, dimension service=vtp)."""
    return cloudwatch.Metric(
        namespace=contract.METRIC_NAMESPACE, metric_name=name, dimensions_map={"service": contract.SERVICE_NAME},
        statistic=statistic, period=period,
    )


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machine: sfn.StateMachine,
        functions: dict[str, lambda_.IFunction],
        dead_letter_queue: sqs.IQueue | None = None,
        alarm_email: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)

        self.topic = sns.Topic(self, "AlarmTopic", display_name="vtp pipeline alarms", enforce_ssl=True)
        # Not KMS-encrypted: it carries alarm notifications only (alarm name and state, no job
        # data); CloudWatch alarms cannot publish to a topic under the AWS-managed SNS key, and a
        # customer-managed key would bill every month while the pipeline is idle.
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        action = cw_actions.SnsAction(self.topic)

        def alarm(construct_id: str, metric: cloudwatch.IMetric, description: str) -> cloudwatch.Alarm:
            created = cloudwatch.Alarm(
                self,
                construct_id,
                metric=metric,
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=description,
            )
            created.add_alarm_action(action)
            return created

        self.alarms: list[cloudwatch.Alarm] = [
            alarm(
                "JobsFailed",
                pipeline_metric(contract.METRIC_JOBS_FAILED),
                "A transcoding job became FAILED (refused input, workflow error, stopped or timed-out "
                "execution); its manifest.json and the jobs table say why.",
            ),
            alarm(
                "JobsOverdue",
                pipeline_metric(contract.METRIC_JOBS_OVERDUE, "Maximum", WATCHDOG_PERIOD),
                "Jobs have been RUNNING longer than expected (parameter OverdueJobMinutes): see "
                "`vtp status --aws` (attempts, last error) and the dead-letter queue.",
            ),
            alarm(
                "ExecutionsFailed",
                state_machine.metric_failed(period=PERIOD, statistic="Sum"),
                "A transcoding job failed (bad input or an error that survived the retries); see the jobs table.",
            ),
            alarm(
                "ExecutionsTimedOut",
                state_machine.metric_timed_out(period=PERIOD, statistic="Sum"),
                "A transcoding job hit the workflow timeout; its job record may still say RUNNING.",
            ),
        ]
        if dead_letter_queue is not None:
            self.alarms.append(
                alarm(
                    "DeadLetters",
                    dead_letter_queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
                    "Work parked in the dead-letter queue: an upload whose splitter deliveries all failed "
                    "(see its job's last_error), or a failure-path event that could not be delivered. "
                    "Fix the cause, then redrive the queue to the uploads queue.",
                )
            )
        for name, function in functions.items():
            self.alarms.append(
                alarm(
                    f"{name}Errors",
                    function.metric_errors(period=PERIOD, statistic="Sum"),
                    f"The {name.lower()} Lambda raised errors (retried ones included).",
                )
            )

        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            default_interval=Duration.hours(3),
            widgets=[
                [
                    cloudwatch.GraphWidget(
                        title="Jobs",
                        left=[
                            state_machine.metric_started(period=PERIOD, statistic="Sum"),
                            state_machine.metric_succeeded(period=PERIOD, statistic="Sum"),
                            state_machine.metric_failed(period=PERIOD, statistic="Sum"),
                            state_machine.metric_timed_out(period=PERIOD, statistic="Sum"),
                        ],
                        width=12,
                    ),
                    cloudwatch.GraphWidget(
                        title="Jobs failed, running, overdue",
                        left=[pipeline_metric(contract.METRIC_JOBS_FAILED),
                              pipeline_metric(contract.METRIC_JOBS_RUNNING, "Maximum", WATCHDOG_PERIOD),
                              pipeline_metric(contract.METRIC_JOBS_OVERDUE, "Maximum", WATCHDOG_PERIOD)],
                        width=6,
                    ),
                    cloudwatch.GraphWidget(
                        title="Job duration (ms)",
                        left=[state_machine.metric_time(period=PERIOD, statistic="Average")],
                        right=[state_machine.metric_time(period=PERIOD, statistic="Maximum")],
                        width=6,
                    ),
                ],
                [
                    cloudwatch.GraphWidget(
                        title="Lambda duration (ms, max)",
                        left=[f.metric_duration(period=PERIOD, statistic="Maximum", label=n) for n, f in functions.items()],
                        width=8,
                    ),
                    cloudwatch.GraphWidget(
                        title="Lambda errors",
                        left=[f.metric_errors(period=PERIOD, statistic="Sum", label=n) for n, f in functions.items()],
                        width=8,
                    ),
                    cloudwatch.GraphWidget(
                        title="Lambda throttles",
                        left=[f.metric_throttles(period=PERIOD, statistic="Sum", label=n) for n, f in functions.items()],
                        width=8,
                    ),
                ],
                [cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24)],
            ],
        )
