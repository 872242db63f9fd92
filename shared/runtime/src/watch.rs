//! Shared watch caches: one API watch per object type, feeding a cache that reconciles read
//! (so deciding whether to write costs no request) and the owner streams of every controller
//! that owns that type.

use futures::StreamExt;
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};

use multigres_api::meta::LABEL_MANAGED_BY;

/// A watch of one object type that several controllers share: one cache, one API watch.
pub struct SharedWatch<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    writer: reflector::store::Writer<K>,
    manager: &'static str,
    trim: fn(&mut K),
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
            trim: |_| {},
        }
    }

    /// Also passes every object through `trim` on arrival, to keep only the fields the
    /// handler reads (for types whose objects are large and many, such as pods).
    pub fn trimmed(mut self, trim: fn(&mut K)) -> Self {
        self.trim = trim;
        self
    }

    /// A stream of changes for one controller; call once per controller before `spawn`.
    pub fn subscribe(&self) -> anyhow::Result<ReflectHandle<K>> {
        self.writer
            .subscribe()
            .ok_or_else(|| anyhow::anyhow!("shared {} watch cannot be subscribed to", K::kind(&())))
    }

    /// Starts watching, through `api` (one namespace or all), every object of this type that
    /// carries the handler's managed-by label, until `stop` resolves; returns the cache.
    pub fn spawn(self, api: Api<K>, stop: crate::process::Stop) -> Cache<K> {
        let config =
            watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={}", self.manager));
        let kind = K::kind(&()).to_string();
        let trim = self.trim;
        let stream = watcher(api, config)
            .default_backoff()
            .modify(move |obj| {
                drop_managed_fields(obj);
                trim(obj);
            })
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
        Cache::new(self.store)
    }
}

/// Nothing reads `metadata.managedFields` from a cache, and it is often the largest part of a
/// cached workload (one entry per field manager, with every field it owns): dropped on arrival,
/// it costs no memory.
fn drop_managed_fields<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// A watch cache whose readiness any number of reconciles may await at once.
///
/// `Store::wait_until_ready` parks its waiters on one `futures` oneshot receiver, which keeps
/// only the last waker: when several reconciles wait before the first list completes (a
/// handler starting with objects already present), all but one are never woken and hang
/// forever, which also blocks graceful shutdown. Here a single task waits on the store and
/// publishes readiness on a `tokio::sync::watch`, which wakes every waiter. (kube-runtime
/// 5.0.0, `src/utils/delayed_init.rs`: `DelayedInit` waits on a `channel::oneshot::Receiver`;
/// awaiting a ready store upstream is still open as kube-rs/kube#1226.)
#[derive(Clone)]
pub struct Cache<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    ready: tokio::sync::watch::Receiver<bool>,
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    /// Wraps `store`, spawning the one task that waits for its first list.
    pub fn new(store: Store<K>) -> Self {
        let (tx, ready) = tokio::sync::watch::channel(false);
        let waiting = store.clone();
        tokio::spawn(async move {
            if waiting.wait_until_ready().await.is_ok() {
                tx.send_replace(true);
            }
        });
        Cache { store, ready }
    }

    /// Resolves once the cache holds its first full list; pending forever if the watch was
    /// stopped before that (the caller is being shut down).
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.clone();
        if ready.wait_for(|r| *r).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Cache<K> {
    /// This cache's first-list readiness, for [`CachesReady`].
    pub fn readiness(&self) -> tokio::sync::watch::Receiver<bool> {
        self.ready.clone()
    }
}

/// The first-list readiness of every cache a controller reads: a reconcile waits for all of
/// them, so "not in the cache" means "does not exist".
#[derive(Clone, Default)]
pub struct CachesReady(Vec<tokio::sync::watch::Receiver<bool>>);

impl CachesReady {
    /// Resolves once every cache holds its first full list; pending forever if a watch was
    /// stopped before that (the caller is being shut down).
    pub async fn wait(&self) {
        for ready in &self.0 {
            if ready.clone().wait_for(|r| *r).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Starts a handler's shared watches in its watched scope and gathers their readiness, so its
/// reconciles wait for every cache they read.
pub struct WatchStarter<'a> {
    common: &'a crate::cli::CommonArgs,
    client: &'a kube::Client,
    stop: crate::process::Stop,
    ready: Vec<tokio::sync::watch::Receiver<bool>>,
}

impl<'a> WatchStarter<'a> {
    pub fn new(
        common: &'a crate::cli::CommonArgs,
        client: &'a kube::Client,
        stop: crate::process::Stop,
    ) -> Self {
        WatchStarter {
            common,
            client,
            stop,
            ready: Vec::new(),
        }
    }

    /// Starts `watch` until the handler stops; returns its cache.
    pub fn start<K>(&mut self, watch: SharedWatch<K>) -> Cache<K>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let cache = watch.spawn(self.common.watch_api(self.client), self.stop.clone());
        self.ready.push(cache.readiness());
        cache
    }

    /// The skeleton's bookkeeping of a handler whose reconciles read (and wait for) every cache
    /// started here, with the handler's resync and trace-follow settings.
    pub fn bookkeeping(
        self,
        manager: &'static str,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> crate::reconcile::Bookkeeping {
        crate::reconcile::Bookkeeping::new(
            self.client.clone(),
            manager,
            CachesReady(self.ready),
            metrics,
            self.common.resync,
        )
        .following_generations_for(self.common.trace_follow_window)
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> std::ops::Deref for Cache<K> {
    type Target = Store<K>;
    fn deref(&self) -> &Store<K> {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::watcher::Event;
    use std::time::Duration;

    /// Many waiters parked before the first list are all woken when it completes.
    #[tokio::test]
    async fn every_concurrent_waiter_sees_the_cache_become_ready() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let cache = Cache::new(store);
        let waiters: Vec<_> = (0..16)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.wait_until_ready().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitDone);
        for (i, waiter) in waiters.into_iter().enumerate() {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .unwrap_or_else(|_| panic!("waiter {i} was never woken"))
                .expect("waiter task");
        }
    }
}
