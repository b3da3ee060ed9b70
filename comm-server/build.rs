// `sqlx::migrate!` embeds the migration files; a new file must trigger a rebuild.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
