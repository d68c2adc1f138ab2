//! Issue 11, point 1 on real processes: two controllers fight through the
//! world. Their effects go to an SDK worker that reports what it did as an
//! observation (`task.observe`, so `caused_by` names the effect); the
//! cluster attributes each observation to the cycle that issued the effect
//! and traps the fight (E005) instead of letting it run forever.

use std::time::{Duration, Instant};

use lexum_client::provenance::Cause;
use lexum_client::{Client, ClientConfig, EffectError, EffectOutput, EffectTask, FieldWrite, Value, Worker};
use lexum_jepsen::cluster::{ClusterOptions, LocalCluster};

const WORLD_FIGHT: &str = r#"
effect Cloud.Scale(count: int)

domain World {
  state {
    replicas: int = 3
  }
}

domain Autoscaler {
  reads World
  goal Enough { World.replicas >= 5 }
  transition Up for Enough retry 3 backoff 50ms..200ms {
    slice go { emit Cloud.Scale(count: 8) }
  }
}

domain GitOps {
  reads World
  goal Pinned { World.replicas <= 6 }
  transition Sync for Pinned retry 3 backoff 50ms..200ms {
    slice go { emit Cloud.Scale(count: 3) }
  }
}
"#;

/// The "cloud": scales, then reports the replicas it now runs, naming the
/// task's effect as the cause.
async fn scale(client: Client, task: EffectTask) -> Result<EffectOutput, EffectError> {
    let count = task.int_arg("count").ok_or_else(|| EffectError::new("missing count"))?;
    let observed = [FieldWrite::new("World", "replicas", Value::Int(count))];
    task.observe(&client, &observed).await.map_err(|e| EffectError::new(e.to_string()))?;
    Ok(EffectOutput::none())
}

async fn status_of(client: &Client, domain: &str, goal: &str) -> Option<(String, Option<String>)> {
    let goals = client.goals().await.ok()?;
    goals.into_iter().find(|g| g.domain == domain && g.goal == goal).map(|g| (g.status, g.code))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fight_through_a_real_worker_and_observer_is_trapped() {
    let cluster = LocalCluster::start(ClusterOptions::default()).await.expect("cluster");
    cluster.wait_for_leader(Duration::from_secs(20)).await.expect("leader");
    let endpoints: Vec<String> = cluster.nodes.values().map(|n| n.addr.clone()).collect();
    let client = Client::connect_with(ClientConfig::new(endpoints.clone()).with_deadline(Duration::from_secs(20)))
        .await
        .expect("client");
    client.submit_source("world.lxm", WORLD_FIGHT).await.expect("submit");

    let observer = Client::connect_with(ClientConfig::new(endpoints.clone()).with_as_name("cloud-observer"))
        .await
        .expect("observer client");
    let worker = Worker::new(observer.clone())
        .worker_id("cloud")
        .concurrency(2)
        .handle("Cloud.Scale", move |task| scale(observer.clone(), task));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run_until(async move {
        let _ = stop_rx.await;
    }));

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        let enough = status_of(&client, "Autoscaler", "Enough").await;
        let pinned = status_of(&client, "GitOps", "Pinned").await;
        let trapped = |s: &Option<(String, Option<String>)>| {
            s.as_ref().is_some_and(|(status, code)| status == "TRAPPED" && code.as_deref() == Some("E005"))
        };
        if trapped(&enough) && trapped(&pinned) {
            last = None;
            break;
        }
        last = Some((enough, pinned));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(());
    let _ = running.await;
    assert!(last.is_none(), "not trapped within 60 s: {last:?}");

    // The writes of World.replicas are the observer's, attributed to the
    // cycles whose effects it observed, with the worker that ran them.
    let writes = client.why("World", "replicas", 10).await.expect("why");
    assert!(writes.len() >= 2, "{writes:?}");
    let mut goals = Vec::new();
    for w in &writes {
        match &w.cause {
            Cause::Client { principal, observed, .. } => {
                assert!(principal.ends_with("/cloud-observer"), "{principal}");
                assert_eq!(observed.len(), 1, "{w:?}");
                assert_eq!(observed[0].worker.as_deref(), Some("cloud"));
                goals.push(observed[0].cycle.goal.clone());
            }
            other => panic!("unexpected cause {other:?}"),
        }
    }
    assert!(goals.iter().any(|g| g == "Autoscaler.Enough") && goals.iter().any(|g| g == "GitOps.Pinned"), "{goals:?}");
    let explanation = client.explain("GitOps", "Pinned").await.expect("explain");
    assert_eq!(explanation.goal.status, "TRAPPED");
    assert!(explanation.goal.evidence.unwrap_or_default().contains("World.replicas"));
    assert!(explanation.vector.iter().any(|v| v.writer == "Autoscaler.Enough"));
}
