"""Monitoring: alarms on failed or timed-out jobs and on Lambda errors, a dashboard, an SNS topic.

Idle cost: each standard alarm is billed (about USD 0.10 a month: 7 alarms here);
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
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct


PERIOD = Duration.minutes(5)


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machine: sfn.StateMachine,
        functions: dict[str, lambda_.IFunction],
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
                        title="Job duration (ms)",
                        left=[state_machine.metric_time(period=PERIOD, statistic="Average")],
                        right=[state_machine.metric_time(period=PERIOD, statistic="Maximum")],
                        width=12,
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
