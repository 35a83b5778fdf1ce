# The same two commands as the README, for those who prefer make.
.PHONY: course test
course:
	python3 run.py course
test:
	python3 run.py test
