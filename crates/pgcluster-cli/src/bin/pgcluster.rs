fn main() {
    println!("pgcluster");
}
