//! Kubernetes Events (events.k8s.io/v1) on the object a reconcile acted on, so
//! `kubectl describe` tells what the handler did and why it failed, and leads to the trace: each
//! note ends with the reconcile's `trace_id` when its trace is exported.
//!
//! kube's recorder aggregates: the same reason about the same object (and the same child)
//! within six minutes becomes one Event whose `series.count` grows, keeping the first note, so a
//! failure retried with backoff is one Event, not one per retry. Publishing never fails a
//! reconcile: an Event that cannot be written is logged at debug and dropped.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::apply::Decision;
use crate::fanout::ChildWrite;

/// The most a note may hold (the API server refuses longer ones).
const MAX_NOTE_BYTES: usize = 1024;

/// Publishes this controller's Events.
#[derive(Clone)]
pub struct EventRecorder {
    recorder: Recorder,
}

impl EventRecorder {
    /// Events reported by `controller` (the field manager name), from this replica
    /// (`POD_NAME`, else the host name).
    pub fn new(client: kube::Client, controller: &str) -> Self {
        let instance = std::env::var("POD_NAME")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(crate::leader::hostname);
        let reporter = Reporter {
            controller: controller.to_string(),
            instance: Some(instance),
        };
        EventRecorder {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Each child of `obj` that a fan-out created, updated to a new desired state or
    /// repaired after someone changed it; children left as they were get none.
    pub async fn children_written<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        writes: &[ChildWrite],
    ) {
        let regarding = obj.object_ref(&());
        let events = writes.iter().filter_map(|w| {
            let (reason, verb) = match w.result.as_ref().ok()? {
                Decision::Create => ("Created", "created"),
                Decision::Changed => ("Updated", "updated"),
                Decision::Drifted => ("Repaired", "repaired (it had been changed)"),
                Decision::UpToDate => return None,
            };
            Some(Event {
                type_: EventType::Normal,
                reason: reason.to_string(),
                note: Some(note(
                    &format!("{} {verb}", w.id),
                    multigres_telemetry::spans::current_trace_id(),
                )),
                action: "Apply".to_string(),
                // Per child, so the recorder does not fold the creation of siblings into one.
                secondary: Some(w.child.clone()),
            })
        });
        let published: Vec<_> = events.map(|e| self.publish(&regarding, e)).collect();
        futures::future::join_all(published).await;
    }

    /// A reconcile of `obj` failed with `reason` (CamelCase, e.g. `InvalidImage`).
    pub async fn failed<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        reason: &str,
        message: &str,
    ) {
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_string(),
            // The failed reconcile's trace is exported at any sampling rate.
            note: Some(note(
                message,
                multigres_telemetry::spans::failure_trace_id(),
            )),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        self.publish(&obj.object_ref(&()), event).await;
    }

    async fn publish(&self, regarding: &ObjectReference, event: Event) {
        if let Err(err) = self.recorder.publish(&event, regarding).await {
            tracing::debug!(
                object = regarding.name.as_deref().unwrap_or_default(),
                reason = %event.reason,
                error = %err,
                "could not publish an Event"
            );
        }
    }
}

/// `message` with `trace_id` appended (the trace the Event's situation is exported in), cut
/// to the size the API server accepts.
fn note(message: &str, trace_id: Option<String>) -> String {
    let suffix = trace_id
        .map(|id| format!(" (trace_id={id})"))
        .unwrap_or_default();
    let room = MAX_NOTE_BYTES - suffix.len();
    let mut cut = message.len().min(room);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &message[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_note_is_cut_on_a_character_boundary_within_the_limit() {
        let message = "é".repeat(2000);
        let cut = note(&message, None);
        assert!(cut.len() <= MAX_NOTE_BYTES, "{} bytes", cut.len());
        assert!(cut.len() >= MAX_NOTE_BYTES - 1, "{} bytes", cut.len());
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_note_outside_an_exported_trace_names_none() {
        assert_eq!(
            note(
                "StatefulSet demo created",
                multigres_telemetry::spans::current_trace_id()
            ),
            "StatefulSet demo created"
        );
    }

    #[test]
    fn a_note_inside_a_reconcile_names_its_trace() {
        let (spans, subscriber) = multigres_test_support::span_capture();
        let _default = multigres_test_support::scoped_default(subscriber);
        let written = tracing::info_span!("reconcile Etcd").in_scope(|| {
            note(
                "InvalidImage: x",
                multigres_telemetry::spans::failure_trace_id(),
            )
        });
        let finished = spans();
        let trace_id = finished[0].span_context.trace_id().to_string();
        assert_eq!(written, format!("InvalidImage: x (trace_id={trace_id})"));
    }
}
