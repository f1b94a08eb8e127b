from heygem.cli import main
from heygem.ending import run_to_the_end

run_to_the_end(main)
