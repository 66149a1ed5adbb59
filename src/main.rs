fn main() {
    println!("pear-server: under construction");
}
