//! Shared watch caches: one API watch per object type, feeding a cache that reconciles read
//! (so deciding whether to write costs no request) and the owner streams of every controller
//! that owns that type.

use futures::StreamExt;
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};

use crate::meta::LABEL_MANAGED_BY;

/// A watch of one object type that several controllers share: one cache, one API watch.
pub struct SharedWatch<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    writer: reflector::store::Writer<K>,
    manager: &'static str,
}

impl<K> SharedWatch<K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    /// A watch of the objects labelled as managed by `manager`.
    pub fn new(manager: &'static str) -> Self {
        let (store, writer) = reflector::store_shared(1024);
        SharedWatch {
            store,
            writer,
            manager,
        }
    }

    /// A stream of changes for one controller; call once per controller before `spawn`.
    pub fn subscribe(&self) -> anyhow::Result<ReflectHandle<K>> {
        self.writer
            .subscribe()
            .ok_or_else(|| anyhow::anyhow!("shared {} watch cannot be subscribed to", K::kind(&())))
    }

    /// Starts watching, through `api` (one namespace or all), every object of this type that
    /// carries the handler's managed-by label, until `stop` resolves; returns the cache.
    pub fn spawn(self, api: Api<K>, stop: crate::process::Stop) -> Store<K> {
        let config =
            watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={}", self.manager));
        let kind = K::kind(&()).to_string();
        let stream = watcher(api, config)
            .default_backoff()
            .reflect_shared(self.writer)
            .for_each(move |event| {
                if let Err(err) = event {
                    tracing::warn!(kind, error = %err, "watch error, retrying");
                }
                std::future::ready(())
            });
        tokio::spawn(async move {
            tokio::select! {
                () = stream => {}
                () = stop => {}
            }
        });
        self.store
    }
}
