//! A service's current task: what `ps` shows, and what a mesh that does
//! not complete may be waiting for.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bollard::models::TaskState;
use bollard::query_parameters::ListTasksOptionsBuilder;

use crate::runtime::engine::{call, DockerError, Engine};
use crate::runtime::member::Member;
use crate::runtime::plan::{Health, RuntimeError};

/// A task's health, as its state tells it: with a health check (the
/// registry's and the node's images have one), the swarm holds a task
/// `starting` until its container is healthy, and one that turns unhealthy
/// is replaced; etcd's image has none.
pub fn health(member: Option<Member>, state: TaskState) -> Option<Health> {
    if !member.is_some_and(Member::serves_http) {
        return None;
    }
    match state {
        TaskState::STARTING => Some(Health::Starting),
        TaskState::RUNNING => Some(Health::Healthy),
        _ => None,
    }
}

/// A service's current task, as `ps` shows it.
#[derive(Debug, Clone)]
pub struct Task {
    pub state: TaskState,
    pub message: String,
    /// Why the newest of the service's tasks that failed or was rejected
    /// did, and when that task was made.
    last_error: Option<(SystemTime, String)>,
    /// The swarm node id of the host it runs on.
    pub host: String,
    created: SystemTime,
}

/// The current task of each of the project's services, by service name:
/// the newest one the swarm wants running.
pub async fn current(engine: &Engine) -> Result<HashMap<String, Task>, DockerError> {
    // Not only those desired running: a task the swarm gave up on says why.
    let options = ListTasksOptionsBuilder::default().filters(&engine.project_filter()).build();
    let tasks = engine.docker.list_tasks(Some(options)).await.map_err(call("list the project's tasks"))?;
    let services = engine.services().await?;
    let names: HashMap<String, String> = services.into_iter().filter_map(|s| Some((s.id?, s.spec?.name?))).collect();
    let mut current: HashMap<String, Task> = HashMap::new();
    for task in tasks {
        let Some(name) = task.service_id.as_ref().and_then(|id| names.get(id)) else { continue };
        let created = task.created_at.as_deref().and_then(|t| humantime::parse_rfc3339_weak(t).ok());
        let status = task.status.unwrap_or_default();
        let task = Task {
            state: status.state.unwrap_or(TaskState::NEW),
            message: status.message.unwrap_or_default(),
            last_error: status.err.map(|error| (created.unwrap_or(std::time::UNIX_EPOCH), error)),
            host: task.node_id.unwrap_or_default(),
            created: created.unwrap_or(std::time::UNIX_EPOCH),
        };
        let known = current.remove(name);
        current.insert(name.clone(), newest(known, task));
    }
    Ok(current)
}

/// How often [`await_running`] looks.
const POLL: Duration = Duration::from_millis(200);

/// Waits until the current task of each of `services` runs: with a health
/// check, once its container is healthy, which is when the swarm gives the
/// service's name an address. Docker's API has no event for it that a
/// manager sees for every host, so this asks every [`POLL`].
pub async fn await_running(engine: &Engine, services: &[String], patience: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let current = current(engine).await?;
        let waiting =
            services.iter().find(|name| current.get(*name).is_none_or(|task| task.state != TaskState::RUNNING));
        let Some(waiting) = waiting else { return Ok(()) };
        if tokio::time::Instant::now() >= deadline {
            return Err(RuntimeError::NotRunning { service: waiting.clone(), waited: patience }.into());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The project's services whose current task is not running, each with
/// its state and why.
pub async fn stuck(engine: &Engine) -> Result<Vec<String>, DockerError> {
    let mut stuck: Vec<String> = current(engine)
        .await?
        .into_iter()
        .filter(|(_, task)| task.state != TaskState::RUNNING)
        .map(|(service, task)| {
            let member = service.strip_prefix(&format!("{}-", engine.name)).unwrap_or(&service).to_owned();
            let failed = task.last_error.map(|(_, error)| format!(" (the last one failed: {error})"));
            format!("{member} {}: {}{}", task.state, task.message, failed.unwrap_or_default())
        })
        .collect();
    stuck.sort();
    Ok(stuck)
}

/// Of a service's tasks, the newer one, keeping the newest error of either.
fn newest(known: Option<Task>, task: Task) -> Task {
    let Some(known) = known else { return task };
    let last_error = match (known.last_error.clone(), task.last_error.clone()) {
        (Some(a), Some(b)) => Some(if a.0 >= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    let newer = if known.created >= task.created { known } else { task };
    Task { last_error, ..newer }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_task_counts_with_the_newest_error_of_all() {
        let at = |secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        let task = |secs, state, error: Option<&str>| Task {
            state,
            message: String::new(),
            last_error: error.map(|e| (at(secs), e.to_owned())),
            host: String::new(),
            created: at(secs),
        };
        let tasks = [
            task(2, TaskState::FAILED, Some("exit (2)")),
            task(3, TaskState::READY, None),
            task(1, TaskState::FAILED, Some("exit (1)")),
        ];
        let current = tasks.into_iter().fold(None, |known, task| Some(newest(known, task))).unwrap();
        assert_eq!(current.state, TaskState::READY);
        assert_eq!(current.last_error.map(|(_, e)| e).as_deref(), Some("exit (2)"));
    }
}
