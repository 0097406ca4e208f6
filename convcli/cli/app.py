def main() -> None:
    raise SystemExit("convcli CLI: coming soon")
