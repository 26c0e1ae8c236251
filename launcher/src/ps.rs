//! `launcher ps`: the project's containers.

use crate::docker::{self, container_name, Project, LABEL_INDEX, LABEL_ROLE};

#[derive(Debug, clap::Args)]
pub struct Args {}

impl Args {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let project = Project { docker: docker::connect().await?, name: project.to_owned() };
        let mut containers = project.containers().await?;
        containers.sort_by_key(container_name);
        let mut table = format!("{:<28} {:<9} {:<8} {:<24} PORTS\n", "NAME", "ROLE", "STATE", "STATUS");
        for container in &containers {
            let label = |key: &str| container.labels.as_ref().and_then(|l| l.get(key)).cloned().unwrap_or_default();
            let ports: Vec<String> = container
                .ports
                .iter()
                .flatten()
                .filter_map(|p| p.public_port.map(|public| format!("{public}->{}", p.private_port)))
                .collect();
            let role = match label(LABEL_INDEX).as_str() {
                "" => label(LABEL_ROLE),
                index => format!("{} {index}", label(LABEL_ROLE)),
            };
            table += &format!(
                "{:<28} {:<9} {:<8} {:<24} {}\n",
                container_name(container).unwrap_or_default(),
                role,
                container.state.map(|s| s.to_string()).unwrap_or_default(),
                container.status.clone().unwrap_or_default(),
                ports.join(",")
            );
        }
        wire::cli::print(&table)?;
        Ok(())
    }
}
