"""``python -m datasets.make_sine_data [--data_dir DIR]``: write the sines files (10 and 50
times, regular and irregular)."""

from datasets import sines
from datasets.command import make_data


def main(argv=None):
    make_data(
        'python -m datasets.make_sine_data',
        __doc__,
        lambda args: sines.generate(args.data_dir),
        lambda args: f'{args.data_dir}/sines/<ntimes>_<regular|irregular>/{{train,val}}.npz',
        argv=argv,
    )


if __name__ == '__main__':
    main()
